"""Given a case's known state, when an upstream event arrives, then intake's verdict."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from processors.intake_rules import (
    MAX_TEXT_CHARS,
    KnownCase,
    Verdict,
    check,
    content_digest,
    evolve,
)
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


def test_an_event_past_the_text_cap_is_refused_naming_its_largest_field() -> None:
    huge = replace(opened(), subject="s" * 10, description="d" * 1_500)
    result = check(None, huge, key="c1", max_text_chars=1_000)
    assert result.verdict is Verdict.REJECT
    assert result.reason.startswith("text_too_long: description has 1500 chars")
    assert "limit 1000" in result.reason


def test_the_cap_counts_every_string_of_the_event_together() -> None:
    """Many fields each under the cap still add up past it: map keys and values count."""
    spread = replace(
        opened(), customer={"name": "n" * 300}, attributes={"k" * 300: "v" * 300, "n": 7}
    )
    assert check(None, spread, key="c1", max_text_chars=1_000).verdict is Verdict.ACCEPT
    assert check(None, spread, key="c1", max_text_chars=900).verdict is Verdict.REJECT
    note = CaseUpdated(
        event_id="e2",
        case_id="c1",
        occurred_at=AT,
        actor="op",
        changes={"description": "x" * 2_000},
    )
    result = check(OPEN, note, key="c1", max_text_chars=1_000)
    assert result.verdict is Verdict.REJECT
    assert "changes.description has 2000 chars" in result.reason


def test_text_up_to_the_default_cap_is_accepted() -> None:
    at_cap = replace(opened(), description="d" * (MAX_TEXT_CHARS - 200))
    assert check(None, at_cap, key="c1").verdict is Verdict.ACCEPT
    past = replace(opened(), description="d" * (MAX_TEXT_CHARS + 1))
    assert check(None, past, key="c1").verdict is Verdict.REJECT


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
