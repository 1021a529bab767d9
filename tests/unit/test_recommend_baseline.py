"""Given a hand-made resolved-case history, when a case comes in, then the baseline's answer."""

from __future__ import annotations

from processors.recommend.answer import Answer
from processors.recommend.baseline import BaselineIndex
from processors.recommend.case_view import open_view
from processors.recommend.visibility import Visibility, model_input
from processors.recommend.vote import baseline_answer
from schemas.events import ActionSpec, CaseOpened, CaseReopened
from tests.unit.test_recommend_support import (
    AT,
    default_policy,
    history,
    index_for,
    opened,
    resolved,
    updated,
)

POLICY = default_policy()
LOCKED = opened(
    "q-1",
    "Locked out after password change",
    "My account is locked since I changed the password.",
    queue="identity",
)
CHARGED = opened(
    "q-2", "Charged twice", "My card was charged twice, please refund.", attributes={"amount": 30.0}
)


def answer(index: BaselineIndex, case: CaseOpened, allowed: list[str] | None = None) -> Answer:
    inp = model_input(open_view(case), index.visibility)
    return baseline_answer(inp, index, case_id=case.case_id, allowed_actions=allowed)


def test_category_action_and_similar_cases_come_from_the_closest_resolved_cases() -> None:
    result = answer(index_for(POLICY), LOCKED)
    assert result.category == "password_reset"
    assert result.action == ActionSpec(name="reset_password", params={"method": "email_link"})
    assert [n.case_id for n in result.similar[:3]] == ["h-pw-1", "h-pw-2", "h-pw-3"]
    assert 0.5 < result.confidence <= 1.0
    assert "h-pw-1" in result.rationale and "password_reset" in result.rationale
    assert result.summary.startswith("Locked out after password change: My account is locked")


def test_the_answer_is_deterministic_across_calls_and_rebuilt_indexes() -> None:
    first = answer(index_for(POLICY), LOCKED)
    assert answer(index_for(POLICY), LOCKED) == first
    index = index_for(POLICY)
    assert answer(index, LOCKED) == answer(index, LOCKED) == first


def test_a_parameter_value_needs_two_agreeing_cases_so_ids_are_never_copied() -> None:
    result = answer(index_for(POLICY), CHARGED)
    assert result.category == "double_charge"
    # 49.0 was used twice (the majority); every order id only once: left out.
    assert result.action == ActionSpec(name="refund_payment", params={"amount": 49.0})


def test_the_cases_own_visible_attribute_fills_a_parameter_of_the_same_name() -> None:
    visibility = Visibility(("subject", "description", "attributes.amount"), ())
    index = BaselineIndex(visibility)
    index.replay(history())
    assert answer(index, CHARGED).action == ActionSpec(
        name="refund_payment", params={"amount": 30.0}
    )


def test_no_history_gives_a_low_confidence_answer_without_action() -> None:
    result = answer(index_for(POLICY, events=[]), LOCKED)
    assert (result.category, result.confidence, result.action, result.similar) == (
        None,
        0.0,
        None,
        (),
    )
    assert result.rationale.startswith("Insufficient history")


def test_history_with_nothing_similar_is_treated_as_no_history() -> None:
    unrelated = opened("q-3", "Zebra", "Quantum xylophone.", queue="shipping")
    result = answer(index_for(POLICY), unrelated)
    assert (result.category, result.confidence, result.action) == (None, 0.0, None)


def test_actions_outside_the_workflow_are_never_recommended() -> None:
    result = answer(index_for(POLICY), CHARGED, allowed=["change_plan", "escalate_to_specialist"])
    assert result.category == "double_charge"
    assert result.action is None  # the closest cases took no allowed action
    assert "no catalog action" in result.rationale


def test_a_case_never_counts_as_its_own_neighbour() -> None:
    same = opened(
        "h-pw-1",
        "Account locked after password change",
        "I changed my password and now my account is locked.",
        queue="identity",
    )
    assert "h-pw-1" not in [n.case_id for n in answer(index_for(POLICY), same).similar]


def test_memory_is_bounded_and_the_oldest_resolved_cases_go_first() -> None:
    index = index_for(POLICY, max_cases=3)
    assert index.resolved_count == 3
    assert dict(index.categories) == {"double_charge": 2, "plan_change": 1}
    assert {n.case_id for n in answer(index, CHARGED).similar} <= {
        "h-bill-2",
        "h-bill-3",
        "h-plan-1",
    }


def test_open_cases_are_bounded_too_and_an_evicted_one_is_not_learned() -> None:
    index = index_for(POLICY, events=[], max_open=1)
    index.replay(
        [LOCKED, CHARGED, resolved("q-1", "password_reset"), resolved("q-2", "double_charge")]
    )
    assert dict(index.categories) == {"double_charge": 1}


def test_the_learned_text_is_the_last_one_before_resolution() -> None:
    index = index_for(POLICY, events=[])
    index.replay(
        [
            opened("n-1", "Question", "Something vague."),
            updated("n-1", {"subject": "Refund duplicate charge"}),
            resolved("n-1", "double_charge"),
        ]
    )
    query = opened("q-4", "Refund of a duplicate charge", "See subject.")
    assert [n.case_id for n in answer(index, query).similar] == ["n-1"]


def test_a_reopened_case_is_unlearned_until_it_is_resolved_again() -> None:
    index = index_for(POLICY)
    index.observe(
        CaseReopened(
            event_id="r-1", case_id="h-plan-1", occurred_at=AT, reason="still on the pro plan"
        )
    )
    assert "plan_change" not in index.categories
    index.observe(resolved("h-plan-1", "plan_downgrade"))
    assert index.categories["plan_downgrade"] == 1 and index.resolved_count == 9


def test_a_repeated_question_is_answered_again_once_the_history_changed() -> None:
    index = index_for(POLICY)
    inp = model_input(open_view(CHARGED), index.visibility)
    first = index.neighbors(inp, exclude_case=CHARGED.case_id)
    assert index.neighbors(inp, exclude_case=CHARGED.case_id) is first  # no second search
    index.replay(
        [
            opened("n-2", "Charged twice again", "My card was charged twice."),
            resolved("n-2", "double_charge"),
        ]
    )
    again = index.neighbors(inp, exclude_case=CHARGED.case_id)
    assert again[0].case_id == "n-2" and again != first


def test_the_index_holds_no_field_outside_the_allowlist_and_no_personal_data() -> None:
    index = index_for(POLICY, events=[])
    index.replay(
        [
            opened(
                "p-1",
                "Refund to ann@example.com",
                "Call me on +44 20 7946 0958 about ORD-55 paid with 4111111111111111.",
                customer={"name": "Zelda Quist", "email": "zq@example.com"},
                attributes={"order_id": "ORD-55", "product": "portal"},
            ),
            resolved("p-1", "double_charge"),
        ]
    )
    terms = index.terms()
    assert not {"ann", "example", "com", "zelda", "quist", "zq", "ord", "55"} & terms
    assert not [t for t in terms if any(d in t for d in ("7946", "0958", "4111"))]
    assert {"[email]", "[phone]", "[order_id]", "[card]", "attributes.product=portal"} <= terms
