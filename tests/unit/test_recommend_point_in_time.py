"""Given labels given at various times and arriving in any order, then a recommendation
for a case sees only the labels given before the case's own time (point-in-time)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from processors.recommend.case_view import CaseView, epoch_ms, open_view
from processors.recommend.memory import Memory
from processors.recommend.service import plan_batch
from schemas.events import CaseOpened, Event
from tests.unit.test_recommend_support import (
    AT,
    ESCALATE,
    default_policy,
    history,
    learned,
    opened,
    overridden,
    reclassified,
    resolved,
)

POLICY = default_policy()
DAY = timedelta(days=1)


def view_at(event: CaseOpened, at: datetime) -> CaseView:
    return replace(open_view(event), as_of_ms=epoch_ms(at))


def later_cases() -> list[Event]:
    """Three more double-charge cases, resolved a day, two and three days after AT."""
    events: list[Event] = []
    for n in (1, 2, 3):
        events.append(opened(f"late-{n}", "Charged twice", "My card was charged twice."))
        events.append(resolved(f"late-{n}", "double_charge", at=AT + n * DAY))
    return events


def answers(memory: Memory, views: list[CaseView]) -> list[tuple[object, ...]]:
    plans = plan_batch(views, POLICY, memory)
    return [
        (
            p.baseline.category,
            p.baseline.confidence,
            p.baseline.action,
            tuple((n.case_id, n.category, n.similarity) for n in p.baseline.similar),
            p.baseline.model_version,
        )
        for p in plans
    ]


def test_a_case_sees_as_similar_only_cases_labelled_before_it() -> None:
    memory = learned([*history(), *later_cases()])
    memory.refit(in_process=True)  # fitted on everything: only the evidence is cut
    probe = opened("q-1", "Charged twice", "My card was charged twice.")
    at_day = {n: view_at(probe, AT + n * DAY + timedelta(hours=1)) for n in (0, 1, 3)}

    similar = {
        n: {s.case_id for s in p.baseline.similar}
        for n, p in zip(at_day, plan_batch(list(at_day.values()), POLICY, memory), strict=True)
    }

    assert not similar[0] & {"late-1", "late-2", "late-3"}
    assert "late-1" in similar[1] and not similar[1] & {"late-2", "late-3"}
    assert {"late-1", "late-2", "late-3"} <= similar[3]


def test_a_neighbour_shows_the_category_it_had_then_and_a_precedent_applies_once_given() -> None:
    correction_at = AT + DAY
    memory = learned(
        [
            *history(),
            reclassified("h-plan-1", "contract_question", at=correction_at),
            overridden("h-plan-1", ESCALATE, at=correction_at),
        ]
    )
    memory.refit(in_process=True)
    # The very words of h-plan-1: the correction is a precedent once it was made.
    labelled = memory.labelled("h-plan-1")
    assert labelled is not None
    same = opened("q-2", labelled.view.subject, labelled.view.description)
    before, after = (view_at(same, correction_at + d) for d in (-timedelta(hours=1), DAY))

    early, late = plan_batch([before, after], POLICY, memory)

    shown_early = {n.case_id: n.category for n in early.baseline.similar}
    shown_late = {n.case_id: n.category for n in late.baseline.similar}
    assert shown_early.get("h-plan-1") == "plan_change"  # its label before the correction
    assert shown_late.get("h-plan-1") == "contract_question"
    assert early.baseline.category != "contract_question" or early.baseline.confidence < 1.0
    assert (late.baseline.category, late.baseline.confidence) == ("contract_question", 1.0)
    assert late.baseline.action is not None and late.baseline.action.name == ESCALATE.name


def test_the_same_labels_in_any_arrival_order_give_the_same_model_and_answers() -> None:
    events = [
        *history(),
        *later_cases(),
        reclassified("h-plan-1", "contract_question", at=AT + 2 * DAY),
    ]
    probe = opened("q-3", "Charged twice", "My card was charged twice.")
    views = [view_at(probe, AT + n * DAY + timedelta(hours=1)) for n in (0, 1, 2, 3)]
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    # Opened before resolved within a case: what intake lets through.
    shuffled.sort(key=lambda e: not isinstance(e, CaseOpened))

    # No explicit refit: the first batch fits on the labels before its earliest case.
    first, second = learned(events), learned(shuffled)

    assert answers(first, views) == answers(second, views)
    assert first.model_version == second.model_version
    first.close()
    second.close()


def test_a_case_scores_exactly_the_same_alone_or_in_any_batch() -> None:
    memory = learned([*history(), *later_cases()])
    memory.refit(in_process=True)
    texts = [("Charged twice", "My card was charged twice."), ("Locked out", "Password reset.")]
    views = [
        view_at(opened(f"b-{i}", *texts[i % 2]), AT + (i % 4) * DAY + timedelta(hours=1))
        for i in range(150)
    ]
    together = answers(memory, views)
    alone = [answers(memory, [v])[0] for v in views[:5]]
    assert alone == together[:5]
    assert answers(memory, views[70:75]) == together[70:75]


def test_the_models_products_do_not_depend_on_a_rows_batch() -> None:
    import numpy as np

    from processors.recommend.model import _mm

    rng = np.random.default_rng(3)
    a = rng.standard_normal((200, 128)).astype(np.float32)
    b = rng.standard_normal((128, 32)).astype(np.float32)
    together = _mm(a, b)
    assert together.dtype == np.float32
    alone = np.vstack([_mm(a[i : i + 1], b) for i in range(200)])
    shifted = _mm(a[7:], b)
    assert np.array_equal(alone, together) and np.array_equal(shifted, together[7:])


def test_labels_the_first_fit_held_back_join_the_model_once_later_cases_come() -> None:
    import time

    memory = learned(history())  # every label given at AT
    probe = opened("q-5", "Charged twice", "My card was charged twice.")
    try:
        [first] = plan_batch([view_at(probe, AT - DAY)], POLICY, memory)
        assert first.baseline.category is None and memory.model_version is None
        assert memory.maintain() is False and not memory.refitting  # still nothing to learn
        plan_batch([view_at(probe, AT + DAY)], POLICY, memory)  # the watermark passes AT
        deadline = time.monotonic() + 120
        while not memory.maintain():
            assert time.monotonic() < deadline, "the held-back labels were never fitted"
            time.sleep(0.05)
        [later] = plan_batch([view_at(probe, AT + DAY)], POLICY, memory)
        assert later.baseline.category == "double_charge"
    finally:
        memory.close()
