"""Policy changes while approvals are open, on the real broker (issue 14, scenario 4 and
deliverable 3): a policy that withdraws an action closes the open items for it at once;
one that asks for more approvers, or other roles, is what an item must satisfy when it
reaches its quorum, so approvals given under the old rules do not run it."""

from __future__ import annotations

from console.policy_topic import publish_policy
from policy.loader import load_policy_text
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ExecutionRequested,
    GuardrailDecided,
    ReviewRecorded,
)
from tests.integration.helpers import running
from tests.integration.pipeline import (
    Downstream,
    Tail,
    policy_text,
    recommendation,
    review,
    send,
)
from tests.stack import Stack

PLAN = ActionSpec(name="change_plan", params={"plan": "pro"})
REFUND = ActionSpec(name="refund_payment", params={"amount": 20.0, "order_id": "ORD-1"})


def test_withdrawing_an_action_closes_its_open_items_and_only_those(stack: Stack) -> None:
    settings = stack.isolated()
    codec = Codec.load()
    with Downstream() as downstream:
        publish_policy(settings, codec, load_policy_text(policy_text(downstream.url)), "tests")
        recs = [
            recommendation("withdrawn-1", PLAN, queue="billing"),
            recommendation("withdrawn-2", PLAN, queue="billing"),
            recommendation("kept-1", REFUND, queue="billing"),
        ]
        tail = Tail(settings, ("decisions", "reviews"), codec)
        try:
            with running(
                settings, ("processors.worker", "guard"), ("processors.worker", "approve")
            ):
                send(settings, codec, recs)
                tail.wait(
                    lambda: (
                        len(
                            {
                                r.event.recommendation_id
                                for r in tail.records
                                if isinstance(r.event, GuardrailDecided)
                                and r.event.outcome == "approval_required"
                            }
                        )
                        == len(recs)
                    ),
                    timeout_s=90,
                    what="three open items",
                )
                banned = policy_text(downstream.url, version="test.2").replace(
                    "      change_plan: {mode: approve}\n      reset_password",
                    "      change_plan: {mode: prohibited}\n      reset_password",
                    1,
                )
                assert "change_plan: {mode: prohibited}" in banned
                publish_policy(settings, codec, load_policy_text(banned), "ops")

                def closed() -> list[ApprovalCompleted]:
                    return [
                        r.event
                        for r in tail.records
                        if isinstance(r.event, ApprovalCompleted) and r.event.outcome == "closed"
                    ]

                tail.wait(lambda: len(closed()) >= 2, timeout_s=90, what="the plan items closed")
                tail.poll(3.0)  # anything else the new policy would (wrongly) close
        finally:
            tail.close()
    done = closed()
    assert sorted(c.recommendation_id for c in done) == ["rec-withdrawn-1-1", "rec-withdrawn-2-1"]
    for c in done:
        assert c.reason is not None and c.reason.startswith("action_withdrawn: policy test.2")
        assert c.action == PLAN and c.approvers == ()
    assert downstream.calls_for("withdrawn-1") == downstream.calls_for("withdrawn-2") == []


def test_approvals_given_under_the_old_quorum_do_not_run_the_action(stack: Stack) -> None:
    """2 supervisors approve a refund that needed 2 of supervisor/finance_lead, but the
    policy now wants 3 finance leads: nothing runs until 3 finance leads approved."""
    settings = stack.isolated()
    codec = Codec.load()
    with Downstream() as downstream:
        publish_policy(settings, codec, load_policy_text(policy_text(downstream.url)), "tests")
        rec = recommendation("quorum-1", REFUND, queue="billing")
        tail = Tail(settings, ("decisions", "executions"), codec)

        def of_case(kind: type) -> list:  # type: ignore[type-arg]
            return [r.event for r in tail.records if isinstance(r.event, kind)]

        try:
            workers = ("guard", "approve", "execute")
            with running(settings, *(("processors.worker", n) for n in workers)):
                send(settings, codec, [rec])
                tail.wait(lambda: of_case(GuardrailDecided), timeout_s=90, what="the decision")
                send(settings, codec, [review(rec, "sam", ("supervisor",))])
                tail.wait(lambda: of_case(ReviewRecorded), timeout_s=60, what="sam's approval")
                stricter = policy_text(downstream.url, version="test.3").replace(
                    "approvals: {count: 2, roles: [supervisor, finance_lead]}",
                    "approvals: {count: 3, roles: [finance_lead]}",
                    1,
                )
                assert "count: 3, roles: [finance_lead]" in stricter
                publish_policy(settings, codec, load_policy_text(stricter), "ops")
                # kim approves the item as it stands (opened under test.1), reaching its
                # old quorum; under test.3 it needs 3 finance leads, so it is re-armed.
                send(settings, codec, [review(rec, "kim", ("supervisor",))])
                tail.wait(lambda: len(of_case(ReviewRecorded)) >= 2, 60, "kim's approval")
                tail.poll(3.0)  # an ExecutionRequested, if the old quorum (wrongly) sufficed
                assert of_case(ExecutionRequested) == []
                item = of_case(ReviewRecorded)[-1]
                assert (item.approvals_required, item.approvers) == (3, ())
                leads = [
                    review(rec, who, ("finance_lead",), n=2, policy_version="test.3")
                    for who in ("fay", "fen", "fox")
                ]
                send(settings, codec, leads)
                [requested] = tail.wait(
                    lambda: of_case(ExecutionRequested), timeout_s=60, what="the run"
                )
        finally:
            tail.close()
    assert sorted(a.actor for a in requested.approvals) == ["fay", "fen", "fox"]
    assert requested.policy_version == "test.3"
