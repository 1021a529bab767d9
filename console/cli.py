"""The `casegate` command line (DESIGN section 5)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from console import readside_cmd
from infra.errors import SetupError
from infra.settings import PROJECT_ROOT, Settings

app = typer.Typer(
    help="casegate: safe rollout of AI-assisted case resolution on Kafka.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
EXAMPLES = PROJECT_ROOT / "examples" / "cases.jsonl"


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body; setup problems print what is wrong and what to do next."""
    try:
        return fn()
    except SetupError as exc:
        err.print(f"[red]error:[/] {exc}")
        if exc.hint:
            err.print(f"[yellow]next:[/] {exc.hint}")
        raise typer.Exit(1) from None


@app.command()
def up() -> None:
    """Start local Kafka (KRaft) and PostgreSQL if needed, create topics, apply migrations."""
    settings = Settings()
    _guard(lambda: _bring_up(settings))


@app.command()
def down() -> None:
    """Stop the local Kafka broker and PostgreSQL server started by `casegate up`."""
    from infra.bootstrap import services_down

    _guard(lambda: services_down(Settings(), out.print))


@app.command()
def topics() -> None:
    """List casegate's topics with partitions, replication and non-default configs."""
    from infra.topics import describe_topics

    states = _guard(lambda: describe_topics(Settings(), timeout_s=10))
    table = Table("topic", "partitions", "replication", "configs")
    for s in states:
        table.add_row(
            s.name,
            str(s.partitions),
            str(s.replication),
            ", ".join(f"{k}={v}" for k, v in sorted(s.configs.items())),
        )
    out.print(table)


@app.command()
def produce(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines file of events")
    ],
) -> None:
    """Publish events written in the contract's JSON form (validated first, sent atomically)."""
    from console.produce import InvalidFile, publish, read_events
    from schemas.codec import Codec

    settings = Settings()
    try:
        events = read_events(path)
    except InvalidFile as exc:
        for e in exc.errors:
            err.print(f"{path}:{e.line}: {e.message}")
        err.print(f"[red]nothing was sent:[/] fix the {len(exc.errors)} line(s) above.")
        raise typer.Exit(2) from None
    with _progress() as progress:
        task = progress.add_task("producing", total=len(events))
        sent = publish(settings, Codec.load(), events, lambda n: progress.advance(task, n))
    out.print(f"sent {sent} event(s) from {path}")


@app.command()
def run(
    components: Annotated[
        list[str] | None, typer.Argument(help="components to run (default: all)")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(help="publish examples/cases.jsonl and show the cases reaching case_state"),
    ] = False,
    stay: Annotated[
        bool | None,
        typer.Option(help="keep running after the demo (default: when attached to a terminal)"),
    ] = None,
) -> None:
    """Start the stack and run casegate's processors and projections, supervised."""
    from console.supervisor import COMPONENTS, Supervisor

    settings = Settings()
    _guard(lambda: _bring_up(settings))
    chosen = components or list(COMPONENTS)
    supervisor = Supervisor(chosen, settings.home / "logs", out.print)
    supervisor.start()
    try:
        if demo:
            _demo(settings)
        # Without a terminal (CI, scripts) a demo run ends once the demo has been shown.
        if stay if stay is not None else (sys.stdin.isatty() or not demo):
            out.print(
                "[green]running[/] — Ctrl-C stops the components; Kafka and PostgreSQL "
                "keep running until `make down`."
            )
            supervisor.run_until_signal()
    finally:
        supervisor.stop()


def _bring_up(settings: Settings) -> None:
    from infra.bootstrap import provision, services_up

    services_up(settings, out.print)
    provision(settings, out.print)


def _demo(settings: Settings) -> None:
    from console.produce import publish, read_events
    from console.views import wait_for_cases
    from schemas.codec import Codec

    events = read_events(EXAMPLES)
    publish(settings, Codec.load(), events)
    case_ids = sorted({e.case_id for e in events})
    out.print(
        f"published {len(events)} example event(s) from {EXAMPLES.name}; waiting for case_state…"
    )
    started = time.monotonic()
    rows = wait_for_cases(settings, case_ids, timeout_s=120)
    table = Table(
        "case_id",
        "status",
        "queue",
        "team",
        "channel",
        "subject",
        title=f"case_state ({time.monotonic() - started:.1f}s after publishing)",
    )
    for row in rows:
        table.add_row(*row)
    out.print(table)
    missing = set(case_ids) - {r[0] for r in rows}
    if missing:
        raise SetupError(
            f"{len(missing)} case(s) did not reach case_state: {', '.join(sorted(missing))}",
            f"Read the component logs under {settings.home / 'logs'}.",
        )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
    )


app.command()(readside_cmd.trace)
app.command()(readside_cmd.metrics)
app.command()(readside_cmd.replay)
app.add_typer(readside_cmd.audit_app, name="audit")

if __name__ == "__main__":
    app()
