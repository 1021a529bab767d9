"""Who may approve what is one rule (policy.approval): the console's answer to "may this
operator do it" is the approve and rollout processors' decision, over a table of
operators x items x verdicts."""

from __future__ import annotations

import itertools

import pytest

from console.api.permissions import override_refusal, verdict_refusal
from console.auth import Operator
from policy.approval import (
    ALREADY_APPROVED,
    NOT_PERMITTED,
    PROPOSER_CANNOT_APPROVE,
    ROLLOUT_PROPOSER,
    UNKNOWN_WORKFLOW,
    promotion_approver,
    promotion_refusal,
)
from processors.approve_rules import Pending
from schemas.events import ActionSpec, ReviewDenied, ReviewRecorded
from tests.unit.test_approve_rules import (
    LATER,
    PLAN_BASIC,
    PLAN_PRO,
    POLICY,
    REFUND,
    on_review,
    pending,
    review,
)

OPERATORS = (
    Operator("alice", ("supervisor",)),
    Operator("bob", ("finance_lead",)),
    Operator("carol", ("agent",)),
    Operator("dan", ("agent", "supervisor")),
    Operator("erin", ()),
)
ITEMS = {
    "refund, none yet": pending(),
    "refund, alice approved": pending(approvers=("alice",), approver_roles=(("supervisor",),)),
    "plan, proposed by alice": pending(PLAN_PRO, proposed_by="alice"),
    "plan, proposed by dan": pending(PLAN_PRO, proposed_by="dan"),
}
OVERRIDES = (
    PLAN_BASIC,
    ActionSpec(name="change_plan", params={"plan": "gold"}),
    ActionSpec(name="close_account"),
    ActionSpec(name="teleport"),
    REFUND,
)


def processor_says(
    item: Pending, operator: Operator, verdict: str, action: ActionSpec | None
) -> tuple[bool, str | None]:
    """(accepted, detail) of the approve processor for this review of `item`."""
    rev = review(operator.name, operator.roles, verdict, override=action)
    events = on_review(item, rev, POLICY, LATER)[1]
    if isinstance(events[0], ReviewRecorded):
        return True, None
    assert isinstance(events[0], ReviewDenied)
    return False, events[0].detail


def console_says(
    item: Pending, operator: Operator, verdict: str, action: ActionSpec | None
) -> tuple[bool, str | None]:
    """(accepted, message) of the console's checks of who the operator is (writes.py)."""
    refusal = verdict_refusal(
        operator, verdict, item.eligible_roles, item.approvers, item.proposed_by, item.action.name
    )
    if refusal is None and action is not None:
        refusal = override_refusal(operator, POLICY.policy, item.workflow, action)
    return (True, None) if refusal is None else (False, refusal[1])


@pytest.mark.parametrize(
    ("item", "operator", "verdict"),
    list(itertools.product(ITEMS, OPERATORS, ("approve", "reject"))),
)
def test_the_console_allows_a_verdict_exactly_when_the_processor_records_it(
    item: str, operator: Operator, verdict: str
) -> None:
    said = console_says(ITEMS[item], operator, verdict, None)
    assert said == processor_says(ITEMS[item], operator, verdict, None)


@pytest.mark.parametrize(("operator", "action"), list(itertools.product(OPERATORS, OVERRIDES)))
def test_the_console_allows_an_override_exactly_when_the_processor_records_it(
    operator: Operator, action: ActionSpec
) -> None:
    # Accepted alike; when both who and what fail, each side names the one it puts first
    # (the console answers 403 before 422), so only the verdict is compared here.
    item = ITEMS["refund, none yet"]
    accepted = console_says(item, operator, "override", action)[0]
    assert accepted is processor_says(item, operator, "override", action)[0]


def test_the_table_holds_both_answers() -> None:
    # Guard against a table that only ever says no (or yes).
    answers = {
        console_says(ITEMS[i], o, v, None)[0]
        for i, o, v in itertools.product(ITEMS, OPERATORS, ("approve", "reject"))
    }
    assert answers == {True, False}


@pytest.mark.parametrize(("operator", "workflow"), list(itertools.product(OPERATORS, ["billing"])))
def test_the_rollout_page_offers_approval_exactly_to_whom_the_rule_permits(
    operator: Operator, workflow: str
) -> None:
    refusal = promotion_refusal(POLICY.policy, workflow, operator.name, operator.roles)
    assert promotion_approver(POLICY.policy, workflow, operator.roles) is (refusal is None)
    if refusal is not None:
        assert refusal.reason == NOT_PERMITTED and "supervisor" in refusal.detail


def test_a_promotion_needs_two_distinct_people_neither_the_proposer() -> None:
    roles = ("supervisor",)
    assert promotion_refusal(POLICY.policy, "billing", "sam", roles, approvals=[]) is None
    twice = promotion_refusal(POLICY.policy, "billing", "sam", roles, approvals=["sam"])
    assert twice is not None and twice.reason == ALREADY_APPROVED
    proposer = promotion_refusal(POLICY.policy, "billing", ROLLOUT_PROPOSER, roles, approvals=[])
    assert proposer is not None and proposer.reason == PROPOSER_CANNOT_APPROVE
    gone = promotion_refusal(POLICY.policy, "nope", "sam", roles)
    assert gone is not None and gone.reason == UNKNOWN_WORKFLOW
