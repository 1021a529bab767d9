"""The weekly review on real data in PostgreSQL (issue 15, deliverable 3).

Given two weeks of billing cases projected by the read models — last week six decided,
none denied; this week seven decided, four denied (one case twice), one execution timed
out, one override, one reclassification and one re-open — when `casegate report weekly`
runs, then the denial rate's move leads the report for the billing workflow and its
segments, and the refusals and escalations are grouped by reason and segment with their
cases.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from typer.testing import CliRunner

from cli.main import app as cli_app
from console.auth import add_operator
from infra.db import database_urls
from infra.settings import Settings
from schemas.events import (
    CaseReopened,
    Event,
    utc_now,
)
from tests.integration import console_story
from tests.integration.console_story import CLOSE, ESCALATE, PLAN, REFUND
from tests.integration.helpers import audited, console_app, running, signed_in
from tests.integration.scenario import policy_event
from tests.stack import env_for


def case(
    name: str, at: Any, action: Any, outcome: str, reasons: tuple[str, ...] = ()
) -> list[Event]:
    rec = f"r-{name}"
    return [
        console_story._opened(name, "billing", "finance", at, f"case {name}"),
        console_story._recommended(name, rec, action, "double_charge", at, "billing"),
        console_story._decided(
            name,
            rec,
            outcome,
            "billing",
            "assisted",
            action,
            at,
            1,
            ("supervisor",),
            reasons=reasons,
        ),
    ]


def history() -> list[Event]:
    now = utc_now()
    last, this = now - timedelta(days=10), now - timedelta(days=2)
    later = this + timedelta(minutes=5)
    events: list[Event] = [policy_event()]
    for i in range(6):
        events += case(f"w{i}", last + timedelta(minutes=i), REFUND, "approval_required")
    events += case("t1", this, PLAN, "approval_required")
    events += case("t2", this, REFUND, "approval_required")
    events += case("t3", this, REFUND, "approval_required")
    events += case("t4", this, REFUND, "denied", ("param_out_of_bounds",))
    events += case("t5", this, REFUND, "denied", ("param_out_of_bounds",))
    events += case("t6", this, CLOSE, "denied", ("action_prohibited",))
    # t5 again (a case update earns a new recommendation): denied again, listed once.
    events += [
        console_story._recommended("t5", "r-t5b", REFUND, "double_charge", later, "billing"),
        console_story._decided(
            "t5",
            "r-t5b",
            "denied",
            "billing",
            "assisted",
            REFUND,
            later,
            reasons=("param_out_of_bounds",),
        ),
    ]
    events += [
        console_story.approval("t1", "r-t1", ("sam",), PLAN, later),
        *console_story.timed_out("t1", "r-t1", "x-t1", PLAN, later, later),
        # t2: sam overrode the refund with an escalation, and it was approved so.
        console_story.overridden("t2", "r-t2", ESCALATE, later),
        console_story.approval("t2", "r-t2", ("sam",), ESCALATE, later),
        CaseReopened(event_id="ro-t2", case_id="t2", occurred_at=later, reason="still charged"),
        console_story.reclassified("t3", later, "account_closure", reason="wants to leave"),
    ]
    return events


def test_the_weekly_review_names_what_moved_what_was_refused_and_where_humans_corrected(
    settings: Settings, tmp_path: Path
) -> None:
    events = history()
    console_story.publish(settings, events)
    with running(settings, ("projections.worker", "readmodels")):
        audited(settings, events, "the two weeks in audit_log")
    out = tmp_path / "weekly.md"

    result = CliRunner().invoke(
        cli_app, ["report", "weekly", "--out", str(out)], env=env_for(settings)
    )

    assert result.exit_code == 0, result.output
    text = out.read_text()
    moves = text.split("## Largest moves")[1].split("##")[0]
    rows = [line for line in moves.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # Denial rate 0 -> 4/7 in the billing workflow and in each of its segments; the other
    # rates' samples (one review, one execution) are below the minimum of 5.
    assert sorted(rows) == sorted(
        f"| {seg} | {value} | denial rate | 0.0% | 57.1% | +57.1 pts | 6 → 7 |"
        for seg, value in (
            ("channel", "email"),
            ("queue", "billing"),
            ("team", "finance"),
            ("workflow", "billing"),
        )
    )
    assert "| billing | refund_payment | param_out_of_bounds | 3 | t4, t5 |" in text
    assert "| billing | close_account | action_prohibited | 1 | t6 |" in text
    assert "| change_plan | timed out | 1 | t1 |" in text
    assert "| billing | billing | refund_payment | escalate_to_specialist | 1 | t2 |" in text
    assert "| billing | billing | account_closure | 1 | t3 |" in text
    reopened = text.split("## Re-opened cases")[1].split("##")[0]
    assert "| billing | billing | 1 | t2 |" in reopened
    # Last week's cases are the baseline only: none of them is listed.
    assert "w0" not in text


def test_the_weekly_review_page_shows_the_same_parts(settings: Settings) -> None:
    events = history()
    console_story.publish(settings, events)
    with running(settings, ("projections.worker", "readmodels")):
        audited(settings, events, "the two weeks in audit_log")
    with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
        token = add_operator(conn, "ann", ("agent",), None, ttl_s=3600)
    with console_app(settings, max_size=2) as app:
        page = signed_in(app, token).get("/reports/weekly")

    assert page.status_code == 200, page.text
    html = page.text
    for title in ("Largest moves", "Denied actions by reason", "Overrides", "Reclassifications"):
        assert f"<h2>{title} " in html
    assert "<td>param_out_of_bounds</td><td>3</td><td>t4, t5</td>" in html
    assert "<td>denial rate</td><td>0.0%</td><td>57.1%</td><td>+57.1 pts</td>" in html
