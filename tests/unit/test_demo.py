"""The demo workload: deterministic, encodable, coherent per case, covering every segment,
inside the default policy, and learnable from its text (no recommender involved)."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from demo.files import write_jsonl
from demo.text import PHRASES, misspell
from demo.workload import (
    CLASSES,
    DEMO_START,
    generate,
    history_before,
    live_from,
    release_schedule,
    split_history,
)
from policy.guard_rules import check_action
from policy.loader import LoadedPolicy, default_policy_path, load_policy_file
from schemas.codec import Codec
from schemas.events import CaseOpened, CaseReopened, CaseResolved, CaseUpdated, Event
from schemas.jsonform import loads

CASES = 1200
NOW = datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC)


@cache
def workload(seed: int = 7, cases: int = CASES) -> tuple[Event, ...]:
    return tuple(generate(seed, cases, DEMO_START, None))


@cache
def policy() -> LoadedPolicy:
    return load_policy_file(default_policy_path())


def opened(events: tuple[Event, ...] | list[Event]) -> list[CaseOpened]:
    return [e for e in events if isinstance(e, CaseOpened)]


def number(case_id: str) -> int:
    return int(case_id.rsplit("-", 1)[1])


def resolutions(events: tuple[Event, ...] | list[Event]) -> list[CaseResolved]:
    return [e for e in events if isinstance(e, CaseResolved)]


# --- determinism ------------------------------------------------------------------------


def test_same_seed_gives_identical_events_and_another_seed_different_ones() -> None:
    mine = list(generate(7, 300, DEMO_START, None))
    assert mine == list(generate(7, 300, DEMO_START, None))
    other = list(generate(8, 300, DEMO_START, None))
    assert {e.event_id for e in other}.isdisjoint({e.event_id for e in mine})
    assert {e.case_id for e in other}.isdisjoint({e.case_id for e in mine})
    assert [o.description for o in opened(other)] != [o.description for o in opened(mine)]


def test_a_case_does_not_depend_on_how_many_cases_or_how_fast() -> None:
    def timeless(events: list[Event]) -> dict[str, Event]:
        return {e.event_id: replace(e, occurred_at=DEMO_START) for e in events}

    small = list(generate(7, 100, DEMO_START, None))
    assert small == [e for e in workload() if number(e.case_id) < 100]
    assert timeless(list(generate(7, 100, DEMO_START, 200.0))) == timeless(small)


def test_the_rate_compresses_the_clock_to_about_that_many_events_per_second() -> None:
    events = list(generate(7, 600, DEMO_START, 50.0))
    # Measure over the opening stretch, where arrivals (not the resolution tail) set the pace.
    body = events[: len(events) // 2]
    seconds = (body[-1].occurred_at - body[0].occurred_at).total_seconds()
    assert 25 <= len(body) / seconds <= 100


# --- encoding, order, lifecycle -----------------------------------------------------------


def test_every_event_round_trips_through_the_codec_and_the_json_form(tmp_path: Path) -> None:
    codec = Codec.load()
    events = workload()[:1000]
    for event in events:
        value, headers = codec.encode(event)
        assert codec.decode(value, headers) == event
    path = tmp_path / "demo.jsonl"
    assert write_jsonl(events, path) == len(events)
    assert [loads(line) for line in path.read_bytes().splitlines()] == list(events)


def test_events_come_in_time_order_and_ids_are_unique() -> None:
    events = workload()
    assert all(a.occurred_at <= b.occurred_at for a, b in itertools.pairwise(events))
    assert len({e.event_id for e in events}) == len(events)
    assert all(re.fullmatch(r"case-7-\d{6}", e.case_id) for e in events)


def test_each_case_opens_first_and_is_resolved_before_it_is_reopened() -> None:
    status: dict[str, str] = {}
    for event in workload():
        if isinstance(event, CaseOpened):
            assert event.case_id not in status
            status[event.case_id] = "open"
            continue
        assert event.case_id in status, f"{event.event_type} before CaseOpened"
        if isinstance(event, CaseResolved):
            assert status[event.case_id] in ("open", "reopened")
            status[event.case_id] = "resolved"
        elif isinstance(event, CaseReopened):
            assert status[event.case_id] == "resolved"
            status[event.case_id] = "reopened"
        else:
            assert status[event.case_id] in ("open", "reopened")


# --- mix and rates ----------------------------------------------------------------------


def test_the_mix_covers_every_queue_team_channel_source_and_class_consistently() -> None:
    cases = opened(workload())
    final = {r.case_id: r.category for r in resolutions(workload())}
    assert {c.queue for c in cases} == {"identity", "billing", "shipping"}
    assert {c.team for c in cases} == {"access", "finance", "logistics"}
    assert {c.channel for c in cases} == {"web", "email", "chat", "phone"}
    assert {c.source for c in cases} == {"helpdesk", "webshop", "mobile"}
    assert set(final.values()) == set(CLASSES)
    for case in cases:
        if case.case_id in final:
            spec = CLASSES[final[case.case_id]]
            assert (case.queue, case.team) == (spec.queue, spec.team)
    for name, count in Counter(final.values()).items():
        assert count / len(final) == pytest.approx(CLASSES[name].weight, abs=0.04)


def test_rates_of_upstream_classes_corrections_updates_and_reopenings() -> None:
    events = workload()
    cases = opened(events)
    n = len(cases)
    final = {r.case_id: r.category for r in resolutions(events)}
    labelled = sum(c.issue_class is not None for c in cases)
    corrections = [e for e in events if isinstance(e, CaseUpdated) and "issue_class" in e.changes]
    reopened = {e.case_id for e in events if isinstance(e, CaseReopened)}
    assert 0.38 <= labelled / n <= 0.52  # ~40% right + ~5% wrong-then-corrected
    assert 0.03 <= len(corrections) / n <= 0.07
    for update in corrections:
        assert update.changes["issue_class"] == final.get(
            update.case_id, update.changes["issue_class"]
        )
    assert 0.015 <= len(reopened) / len(final) <= 0.05
    assert 0.95 <= len(final) / n < 1.0  # a few stay open


def test_customers_carry_personal_data_and_attributes_carry_ids() -> None:
    for case in opened(workload())[:300]:
        assert {"id", "name", "email"} <= case.customer.keys()
        assert re.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.(com|net|org)", case.customer["email"])
        if case.queue != "identity" and "current_plan" not in case.attributes:
            assert re.fullmatch(r"ORD-\d+", str(case.attributes["order_id"]))
        if case.queue == "billing":
            assert isinstance(case.attributes["amount"], float)
    assert any("phone" in c.customer for c in opened(workload()))
    assert any("@example." in c.description for c in opened(workload()))


# --- inside the default policy ----------------------------------------------------------


def test_every_action_humans_took_fits_the_default_policy_envelope() -> None:
    loaded = policy()
    queue_of = {c.case_id: c.queue for c in opened(workload())}
    taken: Counter[str] = Counter()
    for resolved in resolutions(workload()):
        workflow = loaded.policy.workflow_for({"queue": queue_of[resolved.case_id]})
        assert workflow is not None
        for action in resolved.actions_taken:
            assert check_action(action, workflow, loaded) == [], (resolved.case_id, action)
            taken[action.name] += 1
    assert "close_account" not in taken  # prohibited everywhere: humans never did it
    assert set(taken) == set(loaded.policy.catalog) - {"close_account"}
    phases = {wf.phase for wf in loaded.policy.workflows.values()}
    assert phases == {"shadow", "assisted", "bounded"}


def test_the_usual_action_per_class_dominates_and_refunds_stay_under_the_bound() -> None:
    usual = {
        "password_reset": "reset_password",
        "mfa_issue": "resend_mfa_enrollment",
        "double_charge": "refund_payment",
        "plan_change": "change_plan",
        "address_change": "update_address",
    }
    by_class: dict[str, Counter[str]] = defaultdict(Counter)
    for resolved in resolutions(workload()):
        by_class[resolved.category].update(a.name for a in resolved.actions_taken)
        for action in resolved.actions_taken:
            if action.name == "refund_payment":
                amount = action.params["amount"]
                assert isinstance(amount, float) and 0 < amount <= 200
    for cls, name in usual.items():
        assert by_class[cls].most_common(1)[0][0] == name
    assert {"refund_payment", "escalate_to_specialist"} <= set(by_class["refund_request"])
    assert {"reship_order", "escalate_to_specialist"} <= set(by_class["delivery_delay"])


# --- text ---------------------------------------------------------------------------------


def test_no_case_text_names_its_class_label() -> None:
    for case in opened(workload()):
        text = f"{case.subject} {case.description}".lower()
        assert not any(label in text for label in CLASSES)


def test_text_is_learnable_far_above_the_majority_class() -> None:
    """A nearest-centroid over word counts, trained on history, scored on the live part."""
    history, live = split_history(workload(), 0.8)

    def words(case: CaseOpened) -> Counter[str]:
        return Counter(re.findall(r"[a-z]+", f"{case.subject} {case.description}".lower()))

    def labelled(events: list[Event]) -> list[tuple[Counter[str], str]]:
        text = {c.case_id: words(c) for c in opened(events)}
        first = {r.case_id: r.category for r in reversed(resolutions(events))}
        return [(text[case_id], cls) for case_id, cls in first.items()]

    train, test = labelled(history), labelled(live)
    centroids: dict[str, Counter[str]] = defaultdict(Counter)
    for counts, cls in train:
        centroids[cls].update(counts)

    def cosine(a: Counter[str], b: Counter[str]) -> float:
        dot = sum(v * b[k] for k, v in a.items())
        return dot / (
            math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
            or 1.0
        )

    majority = Counter(cls for _, cls in train).most_common(1)[0][0]
    majority_rate = sum(cls == majority for _, cls in test) / len(test)
    hits = sum(
        max(centroids, key=lambda c: cosine(counts, centroids[c])) == cls for counts, cls in test
    )
    accuracy = hits / len(test)
    assert accuracy >= 2 * majority_rate
    assert accuracy >= 0.6
    assert accuracy <= 0.98  # noise and ambiguity keep it from being trivial


def test_misspelling_keeps_ids_and_changes_some_words() -> None:
    import random

    text = "Please refund order ORD-123456 to anna.lee12@example.com because everything broke"
    noisy = misspell(random.Random(1), text, 1.0)
    assert "ORD-123456" in noisy and "anna.lee12@example.com" in noisy
    assert noisy != text
    assert set(PHRASES) == set(CLASSES)


# --- split and broker timing -------------------------------------------------------------


def test_split_keeps_each_case_whole_and_in_opening_order() -> None:
    history, live = split_history(workload(), 0.6)
    assert len(history) + len(live) == len(workload())
    past_ids = {e.case_id for e in history}
    assert past_ids.isdisjoint(e.case_id for e in live)
    assert len(opened(history)) == round(0.6 * CASES)
    assert max(number(c.case_id) for c in opened(history)) < min(
        number(c.case_id) for c in opened(live)
    )
    assert split_history(workload(), 0.0) == ([], list(workload()))
    with pytest.raises(ValueError):
        split_history(workload(), 1.5)


def test_broker_timing_puts_history_in_the_past_and_live_from_now() -> None:
    history = history_before(7, 300, 0.6, NOW)
    live = live_from(7, 300, 0.6, NOW, 50.0)
    assert max(e.occurred_at for e in history) == NOW.replace(microsecond=123000) - timedelta(
        minutes=1
    )
    assert live[0].occurred_at == NOW and isinstance(live[0], CaseOpened)
    assert {e.case_id for e in history}.isdisjoint(e.case_id for e in live)
    assert len(opened(history)) + len(opened(live)) == 300
    # Same cases as the file form; only the clock differs.
    _, file_live = split_history(generate(7, 300, DEMO_START, None), 0.6)
    assert [e.event_id for e in sorted(live, key=lambda e: e.event_id)] == [
        e.event_id for e in sorted(file_live, key=lambda e: e.event_id)
    ]


def test_release_schedule_never_exceeds_the_rate_nor_runs_ahead_of_events() -> None:
    live = live_from(7, 200, 0.0, NOW, 50.0)
    schedule = release_schedule(live, 20.0)
    assert schedule[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(schedule))
    assert all(due >= i / 20.0 for i, due in enumerate(schedule))
    assert all(
        due >= (e.occurred_at - NOW).total_seconds() for e, due in zip(live, schedule, strict=True)
    )
    assert release_schedule([], 5.0) == []
