"""`casegate import history` on the real broker, the whole pipeline running: a resolved
history, under a policy whose bounded workflow would run actions automatically for live
cases, is learned and projected but never acted on (no recommendation, decision, queue
item or execution for it); a live case afterwards is recommended from what was learned
and decided as usual."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from cli.import_cmd import check_history
from infra.db import database_urls
from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import (
    CaseOpened,
    CaseResolved,
    Event,
    ExecutionRequested,
    GuardrailDecided,
    RecommendationProduced,
)
from schemas.jsonform import dumps
from tests.integration.helpers import eventually, running
from tests.integration.pipeline import Tail, send, wait_caught_up
from tests.integration.scenario import policy_event
from tests.integration.test_produce_cli import casegate
from tests.integration.test_recommend_processor import demo_events

CASES = 300
PIPELINE = (
    ("processors.worker", "intake"),
    ("processors.worker", "recommend"),
    ("processors.worker", "guard"),
    ("processors.worker", "approve"),
    ("processors.worker", "execute"),
    ("projections.worker", "readmodels"),
)


def resolved_history(cases: int) -> list[Event]:
    """The first `cases` cases of the demo history that end resolved, all their events."""
    events = demo_events("history.jsonl")
    kept: list[str] = []
    for e in events:
        if isinstance(e, CaseOpened) and len(kept) < cases:
            kept.append(e.case_id)
    chosen = set(kept)
    history = [e for e in events if e.case_id in chosen]
    last = {e.case_id: e for e in history}
    resolved = {c for c, e in last.items() if isinstance(e, CaseResolved)}
    history = [e for e in history if e.case_id in resolved]
    assert check_history(history) == []
    return history


def scalar(settings: Settings, query: str | sql.Composed) -> int:
    with psycopg.connect(database_urls(settings).app) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def test_an_imported_history_is_learned_and_projected_but_never_acted_on(
    settings: Settings, tmp_path: Path
) -> None:
    codec = Codec.load()
    history = resolved_history(CASES)
    imported = {e.case_id for e in history}
    assert any(e.queue == "identity" for e in history if isinstance(e, CaseOpened))
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(dumps(e) for e in history) + b"\n")
    send(settings, codec, [policy_event()])  # identity_access: bounded, resets run on their own

    result = casegate(settings, "import", "history", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"imported {len(imported)} resolved case(s), {len(history)} event(s)" in result.stdout

    tail = Tail(settings, ("recommendations", "decisions", "executions"), codec)
    try:
        with running(settings, *PIPELINE):
            eventually(
                lambda: (
                    scalar(settings, "SELECT count(*) FROM case_state WHERE status='resolved'")
                    == len(imported)
                ),
                timeout_s=180,
                what=f"{len(imported)} resolved cases in case_state",
            )
            wait_caught_up(settings, "recommend", ("cases",), timeout_s=120)
            wait_caught_up(settings, "approve", ("cases",), timeout_s=60)
            tail.poll(1.0)
            # Nothing about the history was recommended, decided, queued or executed.
            assert tail.records == []
            assert scalar(settings, "SELECT count(*) FROM approval_queue") == 0

            # A live case, in the bounded workflow, after the history.
            last = max(e.occurred_at for e in history)
            reset = next(
                e
                for e in history
                if isinstance(e, CaseOpened) and e.queue == "identity" and "password" in e.subject
            )
            live = replace(
                reset,
                event_id="live-open-1",
                case_id="live-1",
                occurred_at=last + timedelta(hours=1),
            )
            send(settings, codec, [live])
            tail.wait(
                lambda: tail.events(ExecutionRequested, case_id="live-1"),
                timeout_s=120,
                what="the live case's automatic run",
            )
            eventually(
                lambda: scalar(settings, "SELECT count(*) FROM case_state") == len(imported) + 1,
                timeout_s=60,
                what="the live case in case_state",
            )
            timeline = scalar(
                settings, "SELECT count(*) FROM case_timeline WHERE topic LIKE '%cases'"
            )
            metrics = {
                column: scalar(
                    settings,
                    sql.SQL("SELECT sum({}) FROM metrics").format(sql.Identifier(column)),
                )
                for column in ("cases_opened", "cases_resolved", "resolved_now", "executions")
            }
    finally:
        tail.close()

    [rec] = tail.events(RecommendationProduced)
    assert rec.case_id == "live-1" and rec.workflow == "identity_access"
    assert rec.similar_cases and {s.case_id for s in rec.similar_cases} <= imported
    assert rec.action is not None and rec.action.name == "reset_password"
    decisions = tail.events(GuardrailDecided)
    assert [(d.case_id, d.outcome) for d in decisions] == [("live-1", "auto_authorized")]
    assert {e.case_id for e in tail.events(ExecutionRequested)} == {"live-1"}
    # The read models hold the whole history.
    assert timeline == len(history) + 1
    assert metrics["cases_opened"] == len(imported) + 1
    assert metrics["cases_resolved"] == metrics["resolved_now"] == len(imported)
    assert metrics["executions"] == 1
