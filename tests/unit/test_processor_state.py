"""Given what the processors keep in their tables, when it is stored and read back, then
nothing changes; and the blast-radius counter keeps exactly the runs that still count."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from policy.facts import CaseFacts
from processors.approve_rules import Pending
from processors.approve_state import item_from_json, item_to_json, no_item
from processors.guard_state import AutoRuns, runs_key
from processors.records import HeldRecord, record_time
from schemas.events import ActionSpec, RecommendationProduced, Routing
from tests.samples import sample_events

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def through_json(value: object) -> object:
    """What a store gives back after a restore from its changelog (JSON in, JSON out)."""
    return json.loads(json.dumps(value))


def test_a_queue_item_survives_the_table_round_trip() -> None:
    item = Pending(
        recommendation_id="r1",
        case_id="c1",
        decision_event_id="d1",
        correlation_id=None,
        workflow="billing",
        action=ActionSpec(
            name="refund_payment",
            params={"amount": 49.5, "order_id": "ORD-1", "notify": True, "note": None},
        ),
        approvals_required=2,
        eligible_roles=("supervisor", "finance_lead"),
        expires_at=NOW + timedelta(hours=8),
        approvers=("alice",),
        policy_version="v1",
        reviews_seen=("rev-1",),
    )

    stored = through_json(item_to_json(item, partition=3))

    assert isinstance(stored, dict) and stored["partition"] == 3
    assert item_from_json(stored) == item
    assert item_from_json(
        through_json(item_to_json(replace(item, status="expired"), 0))
    ) == replace(item, status="expired")


def test_a_decision_without_item_reads_back_as_no_item() -> None:
    marker = through_json(no_item("denied", partition=2))

    assert isinstance(marker, dict) and marker["partition"] == 2
    assert item_from_json(marker) is None
    assert item_from_json(None) is None


def test_the_guard_routes_on_the_fields_the_recommendation_carries() -> None:
    routing = Routing(
        channel="web", queue="billing", team="t", issue_class=None, priority="high", source="crm"
    )
    [sample] = [e for e in sample_events() if isinstance(e, RecommendationProduced)]
    rec = replace(sample, routing=routing)

    facts = CaseFacts.of_recommendation(rec)

    assert facts is not None and facts.case_id == rec.case_id
    assert facts.match_fields() == routing.match_fields()
    # One written before routing existed cannot be routed: the guard dead-letters it.
    assert CaseFacts.of_recommendation(replace(rec, routing=None)) is None


def test_auto_runs_drop_what_left_the_window_and_keep_later_ones() -> None:
    runs = AutoRuns().add("old", NOW - timedelta(seconds=600), 600)
    runs = runs.add("later", NOW + timedelta(seconds=5), 600)  # decided out of time order

    after = runs.add("now", NOW, 600)

    assert [rec for _, rec in after.runs] == ["later", "now"]  # "old" is at now - window
    assert AutoRuns.from_json(through_json(after.to_json())) == after  # type: ignore[arg-type]


def test_a_redelivered_recommendation_does_not_count_its_own_run() -> None:
    runs = AutoRuns().add("r1", NOW, 3600).add("r2", NOW, 3600)

    assert runs.times(excluding="r1") == [NOW]
    assert len(runs.add("r1", NOW, 3600).runs) == 2  # adding it again replaces it
    assert runs_key("identity", 4) == "identity|4"


def test_record_time_is_the_records_timestamp_to_the_millisecond() -> None:
    assert record_time(1_795_000_000.1234) == datetime.fromtimestamp(1_795_000_000.123, UTC)


def test_a_held_record_survives_the_table_round_trip() -> None:
    held = HeldRecord(
        topic="t.recommendations",
        partition=2,
        offset=41,
        timestamp=1.5,
        key=b"c1",
        value=b"\xc3\x01\x00binary",
        held_at=9.25,
    )

    stored = through_json(held.to_json())

    assert isinstance(stored, dict) and HeldRecord.from_json(stored) == held
