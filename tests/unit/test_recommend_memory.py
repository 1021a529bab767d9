"""Given `cases` and `reviews` events, then what the recommender's memory learns, when it
refits, and how a correction changes the next recommendation."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

from processors.recommend.case_view import open_view
from processors.recommend.service import plan
from schemas.events import Event
from tests.unit.test_recommend_support import (
    AT,
    ESCALATE,
    LATER,
    default_policy,
    history,
    learned,
    memory_for,
    opened,
    overridden,
    reclassified,
    reopened,
    resolved,
    updated,
)

POLICY = default_policy()


def test_the_latest_label_by_event_time_wins_whatever_the_arrival_order() -> None:
    early, late = AT, AT + timedelta(hours=2)
    case = opened("c-1", "Charged twice", "Two charges.")
    memory = learned(
        [case, reclassified("c-1", "plan_change", at=late), resolved("c-1", "double_charge")]
    )
    record = memory.labelled("c-1")
    assert record is not None and record.category == "plan_change"  # the resolution is older
    memory.observe(resolved("c-1", "refund_request", at=late + timedelta(minutes=1)))
    assert memory.labelled("c-1").category == "refund_request"  # type: ignore[union-attr]
    assert dict(memory.categories) == {"refund_request": 1}
    memory.observe(reclassified("c-1", "plan_change", at=early))  # older than both: ignored
    assert memory.labelled("c-1").category == "refund_request"  # type: ignore[union-attr]


def test_an_override_labels_the_action_even_of_a_case_not_yet_resolved() -> None:
    memory = learned([opened("c-2", "Charged twice", "Two charges."), overridden("c-2", ESCALATE)])
    record = memory.labelled("c-2")
    assert record is not None and record.corrected
    assert (record.category, record.actions) == (None, (ESCALATE,))
    # Other review verdicts teach nothing.
    memory.observe(opened("c-3", "x", "y"))
    memory.observe(replace(overridden("c-3", ESCALATE), verdict="approve"))
    assert memory.labelled("c-3") is None


def test_a_reopened_case_is_unlearned_until_it_is_resolved_again() -> None:
    memory = learned(history())
    memory.observe(reopened("h-plan-1"))
    assert memory.labelled("h-plan-1") is None and "plan_change" not in memory.categories
    memory.observe(resolved("h-plan-1", "plan_downgrade", at=LATER + timedelta(hours=1)))
    assert memory.categories["plan_downgrade"] == 1 and memory.labelled_count == 9


def test_the_window_keeps_the_most_recently_labelled_cases() -> None:
    memory = learned(history(), max_cases=3)
    assert memory.labelled_count == 3
    assert dict(memory.categories) == {"double_charge": 2, "plan_change": 1}
    # Relabelling makes a case the newest: it survives the next eviction.
    memory.observe(reclassified("h-bill-2", "refund_request"))
    memory.observe(opened("n-1", "New", "Newest case."))
    memory.observe(resolved("n-1", "other"))
    assert {c for c in ("h-bill-2", "h-bill-3", "h-plan-1", "n-1") if memory.labelled(c)} == {
        "h-bill-2",
        "h-plan-1",
        "n-1",
    }


def test_open_cases_are_bounded_too_and_an_evicted_one_is_not_learned() -> None:
    memory = learned(
        [
            opened("o-1", "Locked", "Locked out."),
            opened("o-2", "Charged", "Charged twice."),
            resolved("o-1", "password_reset"),
            resolved("o-2", "double_charge"),
        ],
        max_open=1,
    )
    assert dict(memory.categories) == {"double_charge": 1}


def test_the_learned_text_is_the_latest_and_only_what_models_may_see() -> None:
    memory = learned(
        [
            opened(
                "p-1",
                "Question",
                "Call me on +44 20 7946 0958 about ORD-55 paid with 4111111111111111.",
                customer={"name": "Zelda Quist", "email": "zq@example.com"},
                attributes={"order_id": "ORD-55", "product": "portal", "amount": 12.5},
            ),
            updated("p-1", {"subject": "Refund to ann@example.com"}),
            resolved("p-1", "double_charge"),
        ]
    )
    record = memory.labelled("p-1")
    assert record is not None
    assert record.text == (
        "Refund to [email]\nCall me on [phone] about [order_id] paid with [card]."
    )
    assert record.tags == (
        "channel=email",
        "queue=billing",
        "priority=normal",
        "attributes.product=portal",
    )
    stored = repr(record)
    for secret in ("Zelda", "zq@", "ann@", "7946", "4111", "ORD-55", "12.5", "cu-1"):
        assert secret not in stored


def test_a_correction_changes_the_next_recommendation_for_a_near_identical_case() -> None:
    memory = memory_for(POLICY)
    near = open_view(
        opened("q-1", "Downgrade to the basic plan", "Please move us to the basic plan next month.")
    )
    before = plan(near, POLICY.policy.workflows["billing"], POLICY, memory).baseline
    assert (before.category, before.action and before.action.name) == (
        "plan_change",
        "change_plan",
    )
    memory.observe(reclassified("h-plan-1", "contract_question"))
    memory.observe(overridden("h-plan-1", ESCALATE))
    # At once, before any refit: the similar case shows what the operator said.
    shown = plan(near, POLICY.policy.workflows["billing"], POLICY, memory).baseline
    assert ("h-plan-1", "contract_question") in [(n.case_id, n.category) for n in shown.similar]
    memory.refit(in_process=True)
    after = plan(near, POLICY.policy.workflows["billing"], POLICY, memory).baseline
    assert after.category == "contract_question"
    assert after.action is not None and after.action.name == "escalate_to_specialist"
    assert after.model_version != before.model_version


def test_maintain_refits_in_a_child_process_when_due_and_swaps_the_same_model_in() -> None:
    memory = memory_for(POLICY, refit_every=2, refit_after_s=3600)
    first = memory.model_version
    try:
        assert memory.maintain() is False and not memory.refitting  # nothing changed
        memory.observe(opened("n-1", "Charged twice again", "My card was charged twice."))
        memory.observe(resolved("n-1", "double_charge"))  # one label: not yet due
        assert memory.maintain() is False and not memory.refitting
        memory.observe(reclassified("h-plan-1", "plan_downgrade"))  # two: due
        memory.maintain()
        assert memory.refitting
        deadline = time.monotonic() + 120
        while not memory.maintain():
            assert time.monotonic() < deadline, "the background refit never finished"
            time.sleep(0.05)
        assert memory.refit_failures == 0 and memory.model_version != first
    finally:
        memory.close()
    # The child fitted exactly what this process would have: same examples, same model.
    inline = memory_for(POLICY, events=[*history(), *LATER_EVENTS])
    case = open_view(opened("q-7", "Charged twice", "Refund the second charge please."))
    billing = POLICY.policy.workflows["billing"]
    assert plan(case, billing, POLICY, memory) == plan(case, billing, POLICY, inline)


LATER_EVENTS: list[Event] = [
    opened("n-1", "Charged twice again", "My card was charged twice."),
    resolved("n-1", "double_charge"),
    reclassified("h-plan-1", "plan_downgrade"),
]


def test_time_alone_makes_a_refit_due_once_some_label_changed() -> None:
    memory = memory_for(POLICY, refit_every=1_000, refit_after_s=60)
    try:
        now = time.monotonic()
        assert memory.maintain(now + 3_600) is False and not memory.refitting  # no change
        memory.observe(reclassified("h-bill-1", "refund_request"))
        assert memory.maintain(now) is False and not memory.refitting  # too soon
        memory.maintain(now + 61)
        assert memory.refitting
    finally:
        memory.close()  # abandons the refit under way


def test_events_about_cases_it_never_saw_opened_teach_nothing() -> None:
    memory = learned(
        [
            resolved("ghost", "double_charge"),
            reclassified("ghost", "x"),
            overridden("ghost", ESCALATE),
        ]
    )
    assert memory.labelled_count == 0 and not memory.categories
