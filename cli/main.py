"""The `casegate` command line (architecture §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from cli import (
    alignment_cmd,
    config_cmd,
    demo_cmd,
    erase_cmd,
    eval_cmd,
    import_cmd,
    operators_cmd,
    policy_cmd,
    readside_cmd,
    report_cmd,
    rollout_cmd,
    run_cmd,
    status_cmd,
)
from cli.failures import exit_on_setup_error
from cli.progress import progress
from infra.kafka_auth import as_principal
from infra.settings import Settings

app = typer.Typer(
    help="casegate: safe rollout of AI-assisted case resolution on Kafka.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


@app.command()
def up() -> None:
    """Start local Kafka (KRaft) and PostgreSQL if needed, create topics, apply migrations."""
    settings = Settings()
    exit_on_setup_error(lambda: _bring_up(settings))


@app.command()
def down() -> None:
    """Stop the local Kafka broker and PostgreSQL server started by `casegate up`."""
    from infra.bootstrap import services_down

    exit_on_setup_error(lambda: services_down(Settings(), out.print))


@app.command()
def topics() -> None:
    """List casegate's topics with partitions, replication and non-default configs."""
    from infra.topics import describe_topics

    states = exit_on_setup_error(lambda: describe_topics(Settings(), timeout_s=10))
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
    from cli.produce import InvalidFile, publish, read_events
    from schemas.codec import Codec

    # As an upstream service: the broker takes case events on the intake topic only.
    settings = as_principal(Settings(), "upstream")
    try:
        events = read_events(path)
    except InvalidFile as exc:
        for e in exc.errors:
            err.print(f"{path}:{e.line}: {e.message}")
        err.print(f"[red]nothing was sent:[/] fix the {len(exc.errors)} line(s) above.")
        raise typer.Exit(2) from None
    with progress(out) as bar:
        task = bar.add_task("producing", total=len(events))
        sent = publish(settings, Codec.load(), events, lambda n: bar.advance(task, n))
    out.print(f"sent {sent} event(s) from {path}")


def _bring_up(settings: Settings) -> None:
    from infra.bootstrap import provision, services_up

    services_up(settings, out.print)
    provision(settings, out.print)


app.command()(config_cmd.config)
app.command()(run_cmd.run)
app.command()(status_cmd.status)
app.command()(demo_cmd.demo)
app.command()(readside_cmd.trace)
app.command()(readside_cmd.metrics)
app.command()(alignment_cmd.alignment)
app.command()(readside_cmd.replay)
app.command()(erase_cmd.erase)
app.add_typer(readside_cmd.audit_app, name="audit")
app.add_typer(operators_cmd.app, name="operators")
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(report_cmd.app, name="report")
app.add_typer(rollout_cmd.app, name="rollout")
app.add_typer(import_cmd.app, name="import")

if __name__ == "__main__":
    app()
