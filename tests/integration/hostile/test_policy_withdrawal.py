"""A policy that withdraws an action closes the open approval items for it at once,
on the real broker: nobody is left approving what can no longer run (issue 14,
deliverable 3: items close when the policy withdraws the action)."""

from __future__ import annotations

from console.policy_cmd import publish_policy
from policy.loader import load_policy_text
from schemas.codec import Codec
from schemas.events import ActionSpec, ApprovalCompleted, GuardrailDecided
from tests.integration.helpers import running
from tests.integration.pipeline import Downstream, Tail, policy_text, recommendation, send
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
