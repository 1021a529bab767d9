"""Given a case's known state, when an upstream event arrives, then intake's verdict."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from processors.intake_rules import KnownCase, Verdict, check, content_digest, evolve
from schemas.events import (
    CaseOpened,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    Event,
    ReviewSubmitted,
)

AT = datetime(2026, 11, 27, tzinfo=UTC)


def opened(event_id: str = "e1", case_id: str = "c1") -> CaseOpened:
    return CaseOpened(
        event_id=event_id,
        case_id=case_id,
        occurred_at=AT,
        source="crm",
        channel="email",
        queue="q",
        team="t",
        subject="s",
        description="d",
        priority="normal",
        customer={},
        attributes={},
    )


def resolved() -> CaseResolved:
    return CaseResolved(
        event_id="e3",
        case_id="c1",
        occurred_at=AT,
        resolved_by="op",
        resolution_code="fixed",
        category="login",
        actions_taken=(),
    )


def reopened() -> CaseReopened:
    return CaseReopened(event_id="e4", case_id="c1", occurred_at=AT, reason="again")


def updated() -> CaseUpdated:
    return CaseUpdated(event_id="e2", case_id="c1", occurred_at=AT, actor="op", changes={})


OPEN = KnownCase("open", "e1")
RESOLVED = KnownCase("resolved", "e1")
# Opened by `opened()`, remembered with what it said.
OPENED = KnownCase("open", "e1", content_digest(opened()))


@pytest.mark.parametrize(
    ("known", "event", "verdict", "reason_part"),
    [
        (None, opened(), Verdict.ACCEPT, ""),
        (OPEN, opened(), Verdict.DUPLICATE, ""),
        (OPENED, opened(), Verdict.DUPLICATE, ""),
        (OPENED, replace(opened(), subject="other"), Verdict.REJECT, "event_id_collision"),
        (OPEN, opened(event_id="other"), Verdict.REJECT, "already opened"),
        (None, updated(), Verdict.REJECT, "unknown case"),
        (None, resolved(), Verdict.REJECT, "unknown case"),
        (OPEN, updated(), Verdict.ACCEPT, ""),
        (OPEN, resolved(), Verdict.ACCEPT, ""),
        (OPEN, reopened(), Verdict.REJECT, "not resolved"),
        (RESOLVED, reopened(), Verdict.ACCEPT, ""),
    ],
)
def test_verdicts(
    known: KnownCase | None, event: Event, verdict: Verdict, reason_part: str
) -> None:
    result = check(known, event, key=event.case_id)
    assert result.verdict is verdict
    assert reason_part in result.reason


def test_a_record_keyed_by_another_case_is_rejected() -> None:
    result = check(None, opened(), key="c2")
    assert result.verdict is Verdict.REJECT
    assert "key" in result.reason


def test_internal_events_do_not_belong_on_the_cases_topic() -> None:
    review = ReviewSubmitted(
        event_id="r",
        case_id="c1",
        occurred_at=AT,
        review_id="r1",
        recommendation_id="x",
        actor="op",
        roles=("agent",),
        verdict="approve",
    )
    result = check(OPEN, review, key="c1")
    assert result.verdict is Verdict.REJECT
    assert "ReviewSubmitted" in result.reason


def test_the_case_follows_its_lifecycle() -> None:
    state = evolve(None, opened())
    assert state == KnownCase("open", "e1", content_digest(opened()))
    state = evolve(state, resolved())
    assert state == KnownCase("resolved", "e1", content_digest(opened()))
    assert evolve(state, reopened()) == KnownCase("reopened", "e1", content_digest(opened()))
