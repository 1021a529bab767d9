"""Given a hand-made labelled history, when a case comes in, then the baseline's answer."""

from __future__ import annotations

from collections.abc import Collection

from processors.recommend.answer import Answer
from processors.recommend.baseline import baseline_answer
from processors.recommend.case_view import open_view
from processors.recommend.memory import Memory
from processors.recommend.redacted_view import Visibility, model_input
from schemas.events import ActionSpec, CaseOpened
from tests.unit.test_recommend_support import (
    default_policy,
    history,
    memory_for,
    opened,
    reclassified,
)

POLICY = default_policy()
MEMORY = memory_for(POLICY)  # read-only here: tests that teach build their own
LOCKED = opened(
    "q-1",
    "Locked out after password change",
    "My account is locked since I changed the password.",
    queue="identity",
)
CHARGED = opened(
    "q-2", "Charged twice", "My card was charged twice, please refund.", attributes={"amount": 30.0}
)
UNRELATED = opened("q-3", "Zebra", "Quantum xylophone.", queue="shipping")


def answer(
    case: CaseOpened,
    memory: Memory = MEMORY,
    allowed: Collection[str] | None = None,
    min_confidence: float = 0.5,
) -> Answer:
    inp = model_input(open_view(case), memory.visibility)
    [evidence] = memory.evidence([inp], [case.case_id])
    return baseline_answer(
        inp,
        evidence,
        allowed=allowed,
        min_confidence=min_confidence,
        labelled=memory.labelled_count,
    )


def test_category_action_and_similar_cases_come_from_the_closest_labelled_cases() -> None:
    result = answer(LOCKED)
    assert result.category == "password_reset"
    assert result.action == ActionSpec(name="reset_password", params={"method": "email_link"})
    assert {n.case_id for n in result.similar[:3]} == {"h-pw-1", "h-pw-2", "h-pw-3"}
    assert [n.similarity for n in result.similar] == sorted(
        (n.similarity for n in result.similar), reverse=True
    )
    assert 0.5 <= result.confidence <= 1.0
    top, probability = result.category_probabilities[0]
    assert (top, round(probability, 3)) == ("password_reset", result.confidence)
    assert result.model_version == MEMORY.model_version is not None
    assert "h-pw-1" in result.rationale and "password_reset" in result.rationale
    assert result.summary.startswith("Locked out after password change: My account is locked")


def test_the_answer_is_deterministic_across_calls_and_refitted_memories() -> None:
    first = answer(LOCKED)
    assert answer(LOCKED) == first
    again = memory_for(POLICY)
    assert again.model_version == MEMORY.model_version
    assert answer(LOCKED, again) == first


def test_a_parameter_value_needs_two_agreeing_cases_so_ids_are_never_copied() -> None:
    result = answer(CHARGED)
    assert result.category == "double_charge"
    # 49.0 was used twice (the majority); every order id only once: left out.
    assert result.action == ActionSpec(name="refund_payment", params={"amount": 49.0})


def test_the_cases_own_visible_attribute_fills_a_parameter_of_the_same_name() -> None:
    memory = Memory(Visibility(("subject", "description", "attributes.amount"), ()))
    memory.replay(history())
    memory.refit(in_process=True)
    assert answer(CHARGED, memory).action == ActionSpec(
        name="refund_payment", params={"amount": 30.0}
    )


def test_no_history_gives_a_zero_confidence_answer_without_action() -> None:
    result = answer(LOCKED, memory_for(POLICY, events=[]))
    assert (result.category, result.confidence, result.action, result.similar) == (
        None,
        0.0,
        None,
        (),
    )
    assert result.rationale.startswith("Insufficient history")


def test_below_the_threshold_the_recommender_abstains_and_says_so() -> None:
    unsure = answer(UNRELATED)
    assert unsure.confidence < 0.5 and unsure.action is None
    assert "abstains" in unsure.rationale
    # The same case and model: the threshold alone decides whether an action is named.
    assert answer(LOCKED, min_confidence=0.999).action is None
    assert "abstains" in answer(LOCKED, min_confidence=0.999).rationale
    assert answer(LOCKED, min_confidence=0.0).action is not None


def test_actions_outside_the_workflow_are_never_recommended() -> None:
    result = answer(CHARGED, allowed=["change_plan", "escalate_to_specialist"])
    assert result.category == "double_charge"
    # The humans' refund is not allowed here: its share goes to recommending nothing.
    assert result.action is None
    assert dict(result.action_probabilities)[""] > dict(result.action_probabilities).get(
        "change_plan", 0.0
    )
    assert "no allowed catalog action" in result.rationale.lower()


def test_a_case_never_counts_as_its_own_neighbour() -> None:
    same = opened(
        "h-pw-1",
        "Account locked after password change",
        "I changed my password and now my account is locked.",
        queue="identity",
    )
    assert "h-pw-1" not in [n.case_id for n in answer(same).similar]


def test_a_precedent_decides_before_any_refit_and_is_named() -> None:
    memory = memory_for(POLICY)
    twin = opened("q-9", "CHARGED TWICE!", "my card was charged twice -- please refund")
    assert answer(twin, memory).category == "double_charge"
    memory.observe(opened("p-1", "Charged twice", "My card was charged twice, please refund."))
    memory.observe(reclassified("p-1", "plan_change"))
    corrected = answer(twin, memory)
    assert (corrected.category, corrected.confidence) == ("plan_change", 1.0)
    assert "p-1" in corrected.rationale and "precedent" in corrected.rationale
    # Other words: no precedent, the model (not yet refitted) still answers as before.
    other = opened("q-8", "Double charge", "I was charged twice this month.")
    assert answer(other, memory).category == "double_charge"
