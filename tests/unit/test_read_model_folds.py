"""A batch's events folded per key before one merge statement per table: the rows a batch
leaves for keys that had none (projections/case_state.py, projections/recommendations.py).
That the merge of a stored row gives what one upsert per event gave is proven against
PostgreSQL in tests/integration/test_read_models.py."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import orjson

from projections.audit import GENESIS, _timestamp, row_hash
from projections.case_state import fold
from projections.recommendations import fold_executions, fold_facts
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    CaseOpened,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    ExecutionFailed,
    ExecutionRolledBack,
    PolicyPublished,
    ReviewRecorded,
)
from schemas.jsonform import format_timestamp

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def opened(case: str = "c1", minute: int = 0) -> CaseOpened:
    return CaseOpened(
        event_id=f"o-{case}-{minute}",
        case_id=case,
        occurred_at=T0 + timedelta(minutes=minute),
        source="crm",
        channel="chat",
        queue="q1",
        team="t1",
        issue_class=None,
        subject="s",
        description="d",
        priority="normal",
        customer={},
        attributes={},
    )


def resolved(case: str = "c1", minute: int = 1, category: str = "billing") -> CaseResolved:
    return CaseResolved(
        event_id=f"r-{case}-{minute}",
        case_id=case,
        occurred_at=T0 + timedelta(minutes=minute),
        resolved_by="op",
        resolution_code="done",
        category=category,
        actions_taken=(ActionSpec(name="refund_payment"),),
    )


def updated(changes: dict, minute: int = 2) -> CaseUpdated:
    return CaseUpdated(
        event_id=f"u-{minute}",
        case_id="c1",
        occurred_at=T0 + timedelta(minutes=minute),
        actor="op",
        changes=changes,
    )


def test_a_case_opened_then_resolved_in_one_batch_ends_resolved() -> None:
    row = fold([opened(), resolved()])["c1"].row
    assert (row["status"], row["opened_at"], row["resolved_at"]) == (
        "resolved",
        T0,
        T0 + timedelta(minutes=1),
    )
    assert (row["issue_class"], row["resolution_count"], row["first_action_at"]) == (
        "billing",
        1,
        T0 + timedelta(minutes=1),
    )


def test_two_updates_keep_the_later_one_and_counters_add_up() -> None:
    reopened = [
        CaseReopened(
            event_id=f"x{i}", case_id="c1", occurred_at=T0 + timedelta(minutes=3), reason="r"
        )
        for i in range(2)
    ]
    delta = fold(
        [opened(), updated({"queue": "q2"}), updated({"queue": "q3"}, minute=4), *reopened]
    )["c1"]
    assert delta.row["queue"] == "q3"
    assert (delta.row["reopen_count"], delta.row["status"]) == (2, "reopened")
    assert delta.row["updated_at"] == T0 + timedelta(minutes=4)
    # What the batch does to a stored row: it sets the queue, whatever was stored.
    assert (delta.p_set["queue"], delta.p_value["queue"]) == (True, "q3")


def test_an_update_before_the_case_exists_changes_only_a_stored_row() -> None:
    # One upsert per event: CaseUpdated's column changes were plain UPDATEs, run before
    # the event's own first-action upsert created the row.
    delta = fold([updated({"queue": "q9"}), opened()])["c1"]
    assert delta.row["queue"] == "q1"  # a new row: CaseOpened filled it
    assert (delta.p_set["queue"], delta.p_value["queue"]) == (True, "q9")  # a stored one


def test_the_latest_class_by_event_time_wins_ties_to_the_later_event() -> None:
    delta = fold([resolved(minute=5, category="late"), resolved(minute=1, category="early")])["c1"]
    assert (delta.row["issue_class"], delta.row["issue_class_at"]) == (
        "late",
        T0 + timedelta(minutes=5),
    )
    tie = fold([resolved(minute=5, category="first"), resolved(minute=5, category="second")])
    assert tie["c1"].row["issue_class"] == "second"


def test_events_that_touch_no_case_row_leave_no_delta() -> None:
    policy = PolicyPublished(
        event_id="p",
        case_id="policy",
        occurred_at=T0,
        version="v",
        sha256="s",
        author="a",
        document="d",
    )
    assert fold([policy]) == {}


def test_an_approval_after_an_override_in_the_batch_counts_as_overridden() -> None:
    review = ReviewRecorded(
        event_id="rr",
        case_id="c1",
        occurred_at=T0,
        review_id="rv",
        recommendation_id="r1",
        actor="alice",
        roles=("supervisor",),
        verdict="override",
        approvals_received=1,
        approvals_required=1,
    )
    done = ApprovalCompleted(
        event_id="ac",
        case_id="c1",
        occurred_at=T0,
        recommendation_id="r1",
        outcome="approved",
        approvers=("alice",),
    )
    delta = fold_facts([review, replace(review, event_id="rr2"), done])["r1"]
    assert (delta.row["verdict"], delta.row["approvers"], delta.row["review_status"]) == (
        "overridden",
        ["alice"],
        "approved",
    )
    assert (delta.p_verdict, delta.p_overridden_before) == ("accepted", True)


def test_an_execution_rolled_back_stays_rolled_back_and_keeps_every_account() -> None:
    failed = ExecutionFailed(
        event_id="f",
        case_id="c1",
        occurred_at=T0,
        execution_id="x1",
        action_name="refund_payment",
        error_class="Timeout",
        retriable=False,
        timed_out=True,
        message="slow",
        duration_ms=1.0,
    )
    back = ExecutionRolledBack(
        event_id="b",
        case_id="c1",
        occurred_at=T0,
        execution_id="x1",
        action_name="refund_payment",
        rollback_action="void",
        reason="r",
        succeeded=True,
    )
    row = fold_executions([back, failed])["x1"].row
    assert row is not None
    assert (row["status"], row["rolled_back"], row["message"]) == ("rolled_back", True, "slow")
    row = fold_executions([failed, back])["x1"].row
    assert row is not None
    assert row["message"] == "slow; rolled back with void: r"


def test_the_fast_timestamp_spells_every_moment_as_the_json_form_does() -> None:
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    for _ in range(2000):
        moments.append(
            datetime(
                rng.randint(1, 9998),
                rng.randint(1, 12),
                rng.randint(1, 28),
                rng.randrange(24),
                rng.randrange(60),
                rng.randrange(60),
                rng.randrange(1_000_000),
                tzinfo=rng.choice(zones),
            )
        )
    assert [_timestamp(m) for m in moments] == [format_timestamp(m) for m in moments]


def test_the_row_hash_is_the_sha256_of_the_previous_hash_and_the_canonical_row() -> None:
    content = ("t", 0, 1, 5, "e1", "CaseOpened", "c1", T0, "crm", None, '{"a":1}')
    canonical = orjson.dumps([format_timestamp(T0) if v is T0 else v for v in content])
    expected = hashlib.sha256(GENESIS.encode() + b"\n" + canonical).hexdigest()
    assert row_hash(GENESIS, content) == expected
