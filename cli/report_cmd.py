"""`casegate report weekly|access`: the weekly review and the access review."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from cli.access import OperatorAccess, access_review, record_review
from cli.readside_cmd import _connect, err, out
from console.api.policies import PolicyCache
from console.dryrun import parse_since
from console.weekly import render_markdown, weekly_report
from infra.settings import Settings
from schemas.codec import Codec

app = typer.Typer(help="Review reports: the weekly review and the access review.")


@app.command()
def weekly(
    week_ending: Annotated[
        str | None,
        typer.Option(help="last day of the week to review, YYYY-MM-DD (default: today, UTC)"),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="write the markdown here instead of stdout")
    ] = None,
    min_sample: Annotated[
        int, typer.Option(min=1, help="fewest cases in both weeks for a rate to count as moved")
    ] = 5,
    top: Annotated[int, typer.Option(min=1, help="how many of the largest moves to list")] = 10,
) -> None:
    """Workflows and segments whose metrics moved most week over week, denied and failed
    actions by reason, and escalation patterns (re-opens, reclassifications, overrides),
    as markdown."""
    try:
        last = date.fromisoformat(week_ending) if week_ending else datetime.now(UTC).date()
    except ValueError:
        err.print(f"--week-ending {week_ending!r}: give a date as YYYY-MM-DD")
        raise typer.Exit(2) from None
    with _connect(Settings()) as conn:
        text = render_markdown(weekly_report(conn, last + timedelta(days=1), min_sample, top))
    if out_file is None:
        sys.stdout.write(text)
        return
    out_file.write_text(text, encoding="utf-8")
    out.print(f"weekly review written to {out_file}")


@app.command()
def access(
    since: Annotated[
        str, typer.Option(help="period start: a duration back from now (90d) or a date")
    ] = "90d",
    record: Annotated[
        bool, typer.Option("--record", help="record this review (an AccessReviewed event)")
    ] = False,
    reviewer: Annotated[
        str | None, typer.Option(help="who reviews (with --record; default: your login)")
    ] = None,
    note: Annotated[str | None, typer.Option(help="the reviewer's note, with --record")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the review as JSON")] = False,
) -> None:
    """Every operator, their roles, when their token was last used (unused ones flagged)
    and the high-impact approvals they made in the period."""
    settings = Settings()
    end = datetime.now(UTC)
    try:
        start = parse_since(since, end)
    except ValueError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    with _connect(settings) as conn:
        operators = access_review(conn, start, end, settings.token_unused_s)
        policy = PolicyCache().get(conn)
    if as_json:
        rows = [
            {
                "name": o.name,
                "roles": list(o.roles),
                "status": o.status,
                "last_used_at": o.last_used_at.isoformat() if o.last_used_at else None,
                "unused": o.unused,
                "high_impact_approvals": [
                    {"case_id": a.case_id, "action": a.action, "risk": a.risk, "at": a.at}
                    for a in o.approvals
                ],
            }
            for o in operators
        ]
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_access(operators, start, end, settings.token_unused_s)
    if not record:
        if not as_json:
            out.print("next: `casegate report access --record --reviewer NAME` records the review")
        return
    event = record_review(
        settings,
        Codec.load(),
        reviewer or getpass.getuser(),
        start,
        end,
        operators,
        policy.loaded.version if policy else None,
        note,
    )
    (err if as_json else out).print(
        f"access review {event.event_id} recorded by {event.reviewer} "
        f"({len(event.operators)} operator(s)); it reaches the audit log through the read models"
    )


def _print_access(
    operators: list[OperatorAccess], start: datetime, end: datetime, unused_s: float
) -> None:
    table = Table(
        "operator",
        "roles",
        "status",
        "token last used (UTC)",
        "flag",
        "high-impact approvals",
        title=f"access review {start:%Y-%m-%d} to {end:%Y-%m-%d}",
    )
    for o in operators:
        shown = ", ".join(f"{a.action} on {a.case_id}" for a in o.approvals[:3])
        more = "…" if len(o.approvals) > 3 else ""
        table.add_row(
            o.name,
            ", ".join(o.roles),
            o.status,
            f"{o.last_used_at:%Y-%m-%d %H:%M}" if o.last_used_at else "never",
            f"unused > {unused_s / 86400:g} d" if o.unused else "",
            f"{len(o.approvals)} ({shown}{more})" if shown else "0",
        )
    out.print(table)
    flagged = [o.name for o in operators if o.unused]
    if flagged:
        out.print(f"flagged unused: {', '.join(flagged)}; next: `casegate operators revoke NAME`")
