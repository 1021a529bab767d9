"""`casegate import history FILE|-`: load a desk's resolved history without acting on it.

The file is the contract's JSON form, one upstream event per line (CaseOpened,
CaseUpdated, CaseResolved, CaseReopened), each case's events in their order. It is
checked whole before anything is sent: every line decodes, every case opens first in
the file and ends resolved. Then every record goes to the intake topic, in one Kafka
transaction, with the `casegate_import: history` header (`schemas.codec.IMPORT_HEADER`):
intake validates and forwards it as any case, the recommender learns from it and the
read models project it (timeline, case state, metrics), but nothing is recommended for
these cases, so nothing is decided, queued or executed for them.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from schemas.events import CaseOpened, CaseReopened, CaseResolved, Event

out = Console()
err = Console(stderr=True, soft_wrap=True)
app = typer.Typer(help="Load data into casegate.", no_args_is_help=True)
IMPORT_VALUE = b"history"


@dataclass(frozen=True, slots=True)
class Learned:
    """What a history holds: the summary `import history` prints."""

    cases: int
    events: int
    categories: Counter[str]  # final category of each case
    actions: Counter[str]  # action names taken, once per case
    first: datetime | None
    last: datetime | None


def check_history(events: Sequence[Event]) -> list[str]:
    """Why `events` is not a resolved history (empty: it is): each case must open first
    and end resolved, and only upstream case events belong in it."""
    problems: list[str] = []
    status: dict[str, str] = {}
    for n, event in enumerate(events, start=1):
        if event.topic != "cases":
            problems.append(f"event {n}: {event.event_type} is not a case event")
        elif isinstance(event, CaseOpened):
            if event.case_id in status:
                problems.append(f"event {n}: case {event.case_id} is opened twice")
            status[event.case_id] = "open"
        elif event.case_id not in status:
            problems.append(f"event {n}: case {event.case_id} has events before its CaseOpened")
        elif isinstance(event, CaseResolved):
            status[event.case_id] = "resolved"
        elif isinstance(event, CaseReopened):
            status[event.case_id] = "reopened"
    unresolved = sorted(c for c, s in status.items() if s != "resolved")
    if unresolved:
        shown = ", ".join(unresolved[:5]) + (" …" if len(unresolved) > 5 else "")
        problems.append(
            f"{len(unresolved)} case(s) do not end resolved ({shown}): a history holds "
            "resolved cases only; produce open cases with `casegate produce` instead"
        )
    return problems


def summarize(events: Sequence[Event]) -> Learned:
    """Cases, categories, actions and time span of a history."""
    final: dict[str, CaseResolved] = {}
    for event in events:
        if isinstance(event, CaseResolved):
            final[event.case_id] = event
    actions: Counter[str] = Counter()
    for resolved in final.values():
        actions.update({a.name for a in resolved.actions_taken})
    times = [e.occurred_at for e in events]
    return Learned(
        cases=len({e.case_id for e in events if isinstance(e, CaseOpened)}),
        events=len(events),
        categories=Counter(r.category for r in final.values()),
        actions=actions,
        first=min(times) if times else None,
        last=max(times) if times else None,
    )


@app.command("history")
def history(
    source: Annotated[
        str, typer.Argument(help="JSON Lines file of resolved cases' events, or - for stdin")
    ],
) -> None:
    """Import resolved history: the recommender learns it and the read models project
    it, but casegate never recommends for, decides on, queues or executes these cases."""
    from cli.produce import InvalidFile, publish, read_events, read_lines
    from cli.progress import progress
    from infra.kafka_auth import as_principal
    from infra.settings import Settings
    from schemas.codec import IMPORT_HEADER, Codec

    path = Path(source)
    try:
        if source == "-":
            events = read_lines(sys.stdin.buffer, Path("<stdin>"))
        elif not path.is_file():
            err.print(f"[red]error:[/] {source} is not a file; give a JSONL file or - for stdin.")
            raise typer.Exit(2)
        else:
            events = read_events(path)
    except InvalidFile as exc:
        for e in exc.errors[:20]:
            err.print(f"{source}:{e.line}: {e.message}")
        err.print(f"[red]nothing was sent:[/] fix the {len(exc.errors)} line(s) above.")
        raise typer.Exit(2) from None
    problems = check_history(events)
    if problems:
        for problem in problems[:20]:
            err.print(problem)
        err.print("[red]nothing was sent:[/] fix the history above and import it again.")
        raise typer.Exit(2)
    # As an upstream service: the broker takes case events on the intake topic only.
    settings = as_principal(Settings(), "upstream")
    with progress(out) as bar:
        task = bar.add_task("importing history", total=len(events))
        publish(
            settings,
            Codec.load(),
            events,
            lambda n: bar.advance(task, n),
            headers=[(IMPORT_HEADER, IMPORT_VALUE)],
        )
    render(summarize(events), source)


def render(learned: Learned, source: str) -> None:
    span = (
        f"{learned.first:%Y-%m-%d %H:%M} → {learned.last:%Y-%m-%d %H:%M} UTC"
        if learned.first and learned.last
        else "—"
    )
    out.print(
        f"imported {learned.cases} resolved case(s), {learned.events} event(s), from {source}; "
        f"history spans {span}"
    )
    table = Table("learned", "distinct", "most frequent", title="what the recommender learns")
    for name, counts in (("categories", learned.categories), ("actions", learned.actions)):
        common = ", ".join(f"{k} ({v})" for k, v in counts.most_common(5)) or "—"
        table.add_row(name, str(len(counts)), common)
    out.print(table)
    out.print(
        "These cases are history: casegate recommends, decides, queues and executes nothing "
        "for them. Next: `casegate run` (if not running), then `casegate metrics`."
    )
