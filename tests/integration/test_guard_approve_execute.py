"""Guard → approve → execute on the real broker, against a real local HTTP downstream.

Inputs are hand-made CaseOpened / RecommendationProduced / ReviewSubmitted events. The
processors run as subprocesses; scenarios (a)-(f) of issue 4 share one running pipeline
(one topic prefix, one policy with a workflow per scenario, distinct case ids), because
starting three workers costs more than all the scenarios together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from cli.main import app as cli_app
from console.policy_topic import publish_policy
from infra.kafka import producer_config
from infra.settings import Settings
from policy.loader import load_policy_text
from processors.execute_rules import rollback_execution_id
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    Approval,
    ApprovalCompleted,
    ApprovalExpired,
    DeadLettered,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
)
from tests.integration.helpers import eventually, running
from tests.integration.pipeline import (
    Downstream,
    Tail,
    approvals_settled,
    case_opened,
    policy_text,
    recommendation,
    review,
    send,
)
from tests.stack import Stack, env_for

PROCESSORS = (
    ("processors.worker", "guard"),
    ("processors.worker", "approve"),
    ("processors.worker", "execute"),
)
RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
RESET_SMS = ActionSpec(name="reset_password", params={"method": "sms_code"})


@dataclass
class Pipeline:
    settings: Settings
    codec: Codec
    downstream: Downstream
    out: Tail  # decisions, executions and dead letters, read from the beginning

    def submit(self, *events: object, partition: int | None = None) -> None:
        send(self.settings, self.codec, list(events), partition=partition)  # type: ignore[arg-type]

    def decision(self, rec: RecommendationProduced) -> GuardrailDecided:
        [decided] = self.out.wait(
            lambda: self.out.events(GuardrailDecided, recommendation_id=rec.recommendation_id),
            what=f"the decision on {rec.recommendation_id}",
        )
        return decided

    def refused(self, case_id: str, what: str, timeout_s: float = 60.0) -> ReviewDenied:
        """The one review of `case_id` the approve processor refused."""
        [denied] = self.out.wait(
            lambda: self.out.events(ReviewDenied, case_id=case_id), timeout_s=timeout_s, what=what
        )
        return denied

    def nothing_pending(self) -> None:
        """Approve and execute have read everything there is: nothing more will come."""
        approvals_settled(self.settings, self.out)


@pytest.fixture(scope="module")
def pipeline(stack: Stack) -> Iterator[Pipeline]:
    # A short review wait, so that a review of an unknown item is refused within the test.
    settings = stack.isolated(review_wait_s=3.0)
    codec = Codec.load()
    with Downstream() as downstream:
        publish_policy(settings, codec, load_policy_text(policy_text(downstream.url)), "tests")
        with running(settings, *PROCESSORS):
            out = Tail(settings, ("decisions", "executions", "deadletter"))
            try:
                yield Pipeline(settings, codec, downstream, out)
            finally:
                out.close()


def test_a_shadow_workflow_is_shadowed_and_nothing_executes(pipeline: Pipeline) -> None:
    rec = recommendation("shadow-1", RESET, queue="shadowq")
    pipeline.submit(case_opened("shadow-1", "shadowq"), rec)

    decided = pipeline.decision(rec)
    assert (decided.outcome, decided.workflow, decided.phase) == ("shadowed", "shadow_wf", "shadow")
    assert decided.reasons == ("phase_shadow", "would_require_approval")
    assert decided.policy_version == "test.1"
    pipeline.nothing_pending()
    assert pipeline.out.events(ExecutionRequested, recommendation_id=rec.recommendation_id) == []
    assert pipeline.downstream.calls_for("shadow-1") == []


def test_b_assisted_approval_by_an_eligible_operator_runs_the_action(pipeline: Pipeline) -> None:
    rec = recommendation(
        "assisted-1", ActionSpec(name="change_plan", params={"plan": "pro"}), queue="billing"
    )
    pipeline.submit(case_opened("assisted-1", "billing"), rec)
    decided = pipeline.decision(rec)
    assert (decided.outcome, decided.approvals_required) == ("approval_required", 1)
    assert decided.eligible_roles == ("supervisor", "finance_lead")

    pipeline.submit(review(rec, "sam", ("supervisor",)))
    out = pipeline.out
    [done] = out.wait(
        lambda: out.events(ExecutionSucceeded, case_id="assisted-1"),
        what="the approved plan change to run",
    )
    [request] = out.events(ExecutionRequested, case_id="assisted-1")
    [completed] = out.events(ApprovalCompleted, case_id="assisted-1")
    assert (completed.outcome, completed.approvers) == ("approved", ("sam",))
    assert (request.mode, request.requested_by, request.workflow) == (
        "approved",
        "sam",
        "assisted_wf",
    )
    assert done.execution_id == request.execution_id and done.result["plan_active"] is True
    [call] = pipeline.downstream.calls_for("assisted-1")
    assert call.key == request.execution_id  # the idempotency key reached the downstream
    assert call.body == {
        "execution_id": request.execution_id,
        "case_id": "assisted-1",
        "action": "change_plan",
        "params": {"plan": "pro"},
    }


def test_c_sensitive_action_needs_two_distinct_eligible_approvers(pipeline: Pipeline) -> None:
    refund = ActionSpec(name="refund_payment", params={"amount": 49.0, "order_id": "ORD-7"})
    rec = recommendation("refund-1", refund, queue="billing")
    pipeline.submit(case_opened("refund-1", "billing"), rec)
    assert pipeline.decision(rec).approvals_required == 2

    # Same partition (keyed by case): approve reads them in this order.
    pipeline.submit(
        review(rec, "alice", ("supervisor",)),
        review(rec, "alice", ("supervisor",), n=2),
        review(rec, "carol", ("agent",)),
        review(rec, "bob", ("finance_lead",)),
    )
    out = pipeline.out
    [done] = out.wait(
        lambda: out.events(ExecutionSucceeded, case_id="refund-1"),
        what="the refund to run after the second approval",
    )
    recorded = out.events(ReviewRecorded, case_id="refund-1")
    assert [(r.actor, r.approvals_received, r.approvals_required) for r in recorded] == [
        ("alice", 1, 2),
        ("bob", 2, 2),
    ]
    denied = {d.actor: d.reason for d in out.events(ReviewDenied, case_id="refund-1")}
    assert denied == {"alice": "duplicate_approver", "carol": "role_not_eligible"}
    [request] = out.events(ExecutionRequested, case_id="refund-1")
    assert request.requested_by == "alice,bob" and done.execution_id == request.execution_id
    assert [c.key for c in pipeline.downstream.calls_for("refund-1")] == [request.execution_id]


def test_d_prohibited_action_is_denied_and_never_executed(pipeline: Pipeline) -> None:
    rec = recommendation("prohibited-1", ActionSpec(name="close_account"), queue="billing")
    pipeline.submit(case_opened("prohibited-1", "billing"), rec)

    decided = pipeline.decision(rec)
    assert (decided.outcome, decided.reasons) == ("denied", ("action_prohibited",))
    # An operator trying to approve it anyway is refused: there is nothing to approve.
    pipeline.submit(review(rec, "root", ("admin",)))
    out = pipeline.out
    denied = pipeline.refused("prohibited-1", "the review of a denied action to be refused")
    assert denied.reason == "unknown_item"
    pipeline.nothing_pending()
    assert out.events(ExecutionRequested, case_id="prohibited-1") == []
    assert pipeline.downstream.calls_for("prohibited-1") == []


def test_e_bounded_auto_runs_alone_within_its_envelope(pipeline: Pipeline) -> None:
    # bounded_wf allows 6 automatic runs an hour over 6 partitions: one per partition.
    first, second = (
        recommendation("bounded-1", RESET, queue="identity"),
        recommendation("bounded-2", RESET, queue="identity"),
    )
    outside = recommendation("bounded-3", RESET_SMS, queue="identity")
    lenient = recommendation("lenient-1", RESET_SMS, queue="identity2")
    # All in partition 0, so the second run meets the first in the same counter.
    pipeline.submit(case_opened("bounded-1", "identity"), first, partition=0)
    assert pipeline.decision(first).outcome == "auto_authorized"
    pipeline.submit(
        case_opened("bounded-2", "identity"),
        second,
        case_opened("bounded-3", "identity"),
        outside,
        partition=0,
    )
    pipeline.submit(case_opened("lenient-1", "identity2"), lenient)

    over = pipeline.decision(second)
    assert (over.outcome, over.reasons) == (
        "approval_required",
        ("blast_radius_exceeded", "needs_approval"),
    )
    assert (pipeline.decision(outside).outcome, pipeline.decision(outside).reasons) == (
        "denied",
        ("param_out_of_bounds",),
    )
    assert (pipeline.decision(lenient).outcome, pipeline.decision(lenient).reasons) == (
        "approval_required",
        ("param_out_of_bounds", "needs_approval"),
    )
    out = pipeline.out
    [done] = out.wait(
        lambda: out.events(ExecutionSucceeded, case_id="bounded-1"),
        what="the automatic reset to run",
    )
    [request] = out.events(ExecutionRequested, case_id="bounded-1")
    assert (request.mode, request.requested_by, request.workflow) == (
        "auto",
        "policy",
        "bounded_wf",
    )
    assert [c.key for c in pipeline.downstream.calls_for("bounded-1")] == [done.execution_id]
    pipeline.nothing_pending()
    for case_id in ("bounded-2", "bounded-3", "lenient-1"):
        assert out.events(ExecutionRequested, case_id=case_id) == []


def test_f_timeout_fails_and_a_missed_post_condition_rolls_back(pipeline: Pipeline) -> None:
    slow = recommendation("ops-slow", ActionSpec(name="sync_profile"), queue="ops")
    switch = recommendation(
        "ops-switch", ActionSpec(name="switch_plan", params={"plan": "enterprise"}), queue="ops"
    )
    pipeline.submit(case_opened("ops-slow", "ops"), slow, case_opened("ops-switch", "ops"), switch)
    out = pipeline.out

    [timed_out] = out.wait(
        lambda: out.events(ExecutionFailed, case_id="ops-slow"), what="the slow action to time out"
    )
    assert (timed_out.error_class, timed_out.timed_out, timed_out.retriable) == (
        "Timeout",
        True,
        True,
    )
    assert 900 <= timed_out.duration_ms < 2500  # the catalog's 1 s timeout, not the 3 s answer

    [rolled] = out.wait(
        lambda: out.events(ExecutionRolledBack, case_id="ops-switch"),
        what="the plan switch to be rolled back",
    )
    [failed] = out.events(ExecutionFailed, case_id="ops-switch")
    [request] = out.events(ExecutionRequested, case_id="ops-switch")
    assert (failed.error_class, failed.retriable) == ("PostConditionFailed", False)
    assert (rolled.rollback_action, rolled.succeeded) == ("switch_plan", True)
    assert rolled.reason == "post_condition_failed: plan_active"
    calls = pipeline.downstream.calls_for("ops-switch")
    assert [(c.key, c.body["params"]) for c in calls] == [
        (request.execution_id, {"plan": "enterprise"}),
        (rollback_execution_id(request), {"plan": "basic"}),  # back to the previous plan
    ]
    assert out.events(ExecutionSucceeded, case_id="ops-switch") == []


def test_a_pending_approval_past_its_expiry_leaves_the_queue(pipeline: Pipeline) -> None:
    rec = recommendation(
        "expiring-1", ActionSpec(name="change_plan", params={"plan": "pro"}), queue="expiring"
    )
    pipeline.submit(case_opened("expiring-1", "expiring"), rec)
    decided = pipeline.decision(rec)
    out = pipeline.out

    [expired] = out.wait(
        lambda: out.events(ApprovalExpired, case_id="expiring-1"),
        timeout_s=30,
        what="the 2 s approval to expire",
    )
    assert expired.expired_at == decided.expires_at == expired.occurred_at
    assert expired.causation_id == decided.event_id
    pipeline.submit(review(rec, "sam", ("supervisor",)))
    denied = pipeline.refused("expiring-1", "a review after expiry to be refused")
    assert denied.reason == "item_closed"
    pipeline.nothing_pending()
    assert out.events(ExecutionRequested, case_id="expiring-1") == []


def test_bad_records_are_dead_lettered_and_processing_goes_on(pipeline: Pipeline) -> None:
    settings, out = pipeline.settings, pipeline.out
    producer = Producer(producer_config(settings))
    producer.produce(
        settings.topic("recommendations"), key=b"junk-1", value=b"not avro", partition=1
    )
    miskeyed = recommendation("miskeyed-1", RESET, queue="identity2")
    value, headers = pipeline.codec.encode(miskeyed)
    producer.produce(
        settings.topic("recommendations"),
        key=b"someone-else",
        value=value,
        headers=headers,
        partition=1,
    )
    producer.flush(10)
    after = recommendation("after-junk", RESET, queue="identity2")
    pipeline.submit(case_opened("after-junk", "identity2"), after, partition=1)

    assert pipeline.decision(after).outcome == "auto_authorized"
    letters = out.wait(
        lambda: len(found := out.events(DeadLettered)) >= 2 and found,
        what="both bad recommendations to be dead-lettered",
    )
    guard = f"{settings.topic_prefix}guard"
    by_class = {d.error_class: d for d in letters if d.consumer == guard}
    assert by_class["UndecodableRecord"].raw == b"not avro"
    assert "differs from case_id" in by_class["InvalidEvent"].reason
    assert out.events(GuardrailDecided, case_id="miskeyed-1") == []


def test_g_a_policy_published_mid_run_changes_the_next_decisions(
    settings: Settings, tmp_path: Path
) -> None:
    codec = Codec.load()
    cli = CliRunner()
    env = env_for(settings)

    def publish(text: str) -> str:
        path = tmp_path / f"policy-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(text)
        result = cli.invoke(
            # What the guard does with each version is this test's subject, not the
            # dry-run a publish otherwise asks for (tests/integration/test_policy_dry_run.py).
            cli_app,
            ["policy", "publish", str(path), "--author", "tester", "--without-dry-run"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        return result.output

    with Downstream() as downstream, running(settings, *PROCESSORS) as logs:
        out = Tail(settings, ("decisions", "executions"))
        v1 = policy_text(downstream.url, version="test.1")
        v2 = policy_text(
            downstream.url, version="test.2", assisted_phase="bounded", assisted_reset_mode="auto"
        )
        v3 = v2.replace('version: "test.2"', 'version: "test.3"').replace(
            "change_plan: {mode: approve}\n      reset_password",
            "change_plan: {mode: prohibited}\n      reset_password",
        )

        # No policy yet: the guard waits rather than deciding with one it made up.
        first = recommendation("g-1", RESET, queue="billing")
        send(settings, codec, [case_opened("g-1", "billing"), first])
        eventually(
            lambda: "records wait for a policy" in logs[0].read_text(),
            what="the guard to hold the recommendation until a policy is published",
        )
        out.poll(1.0)
        assert out.events(GuardrailDecided) == []
        assert "published policy test.1" in publish(v1)
        decided = out.wait(
            lambda: out.events(GuardrailDecided, case_id="g-1"),
            what="the waiting recommendation to be decided under test.1",
        )
        assert [(d.outcome, d.policy_version) for d in decided] == [("approval_required", "test.1")]

        # test.2 turns the billing workflow bounded with reset_password auto.
        publish(v2)
        probe = probe_guard(settings, codec, out, "g-probe2", RESET, "test.2")
        assert (probe.outcome, probe.phase) == ("auto_authorized", "bounded")
        later = [recommendation(f"g-2-{i}", RESET, queue="billing") for i in range(3)]
        send(settings, codec, [e for r in later for e in (case_opened(r.case_id, "billing"), r)])
        for r in later:
            [d] = out.wait(
                lambda r=r: out.events(GuardrailDecided, case_id=r.case_id),
                what=f"the decision on {r.case_id}",
            )
            assert (d.outcome, d.policy_version) == ("auto_authorized", "test.2")
        out.wait(
            lambda: len(out.events(ExecutionSucceeded)) >= 4,
            what="the automatic resets under test.2 to run",
        )
        plan = recommendation(
            "g-plan", ActionSpec(name="change_plan", params={"plan": "pro"}), queue="billing"
        )
        send(settings, codec, [case_opened("g-plan", "billing"), plan])
        [pending] = out.wait(
            lambda: out.events(GuardrailDecided, case_id="g-plan"),
            what="the plan change to await approval",
        )
        assert (pending.outcome, pending.policy_version) == ("approval_required", "test.2")

        # test.3 prohibits plan changes: the guard denies new ones, and the executor
        # refuses the one approved under test.2.
        publish(v3)
        plan_probe = probe_guard(
            settings,
            codec,
            out,
            "g-probe3",
            ActionSpec(name="change_plan", params={"plan": "pro"}),
            "test.3",
        )
        assert (plan_probe.outcome, plan_probe.reasons) == ("denied", ("action_prohibited",))
        probe_executor(settings, codec, out, "test.3")
        # The item stood under test.2 when sam reviewed it; at its quorum the approve
        # processor re-checks under test.3 and closes it: nothing is requested or run.
        send(settings, codec, [review(plan, "sam", ("supervisor",), policy_version="test.2")])
        [closed] = out.wait(
            lambda: out.events(ApprovalCompleted, case_id="g-plan"),
            what="the approve processor to close the withdrawn plan change",
        )
        assert closed.outcome == "closed"
        assert closed.reason is not None and closed.reason.startswith("action_withdrawn")
        out.poll(2.0)
        assert out.events(ExecutionRequested, case_id="g-plan") == []
        assert downstream.calls_for("g-plan") == []
        out.close()


def probe_guard(
    settings: Settings, codec: Codec, out: Tail, name: str, action: ActionSpec, version: str
) -> GuardrailDecided:
    """Send probe recommendations until one is decided under `version` (each is decided
    with the newest policy the guard has read; publishing does not wait for readers)."""
    for i in range(40):
        rec = recommendation(f"{name}-{i}", action, queue="billing")
        send(settings, codec, [case_opened(rec.case_id, "billing"), rec])
        [d] = out.wait(
            lambda rec=rec: out.events(GuardrailDecided, case_id=rec.case_id),
            what=f"the decision on probe {rec.case_id}",
        )
        if d.policy_version == version:
            return d
    raise AssertionError(f"the guard never decided under {version}")


def probe_executor(settings: Settings, codec: Codec, out: Tail, version: str) -> None:
    """Hand-made plan-change requests until the executor refuses one under `version`."""
    for i in range(40):
        req = ExecutionRequested(
            event_id=f"probe-req-{version}-{i}",
            case_id=f"probe-exec-{i}",
            occurred_at=datetime.now(UTC),
            execution_id=f"probe-exec-{version}-{i}",
            recommendation_id="probe",
            action=ActionSpec(name="change_plan", params={"plan": "basic"}),
            mode="approved",
            requested_by="probe",
            policy_version="probe",
            workflow="assisted_wf",
            # Approved as the policy asks, so only the policy version decides the outcome.
            approvals=(Approval(actor="probe", roles=("supervisor",)),),
        )
        send(settings, codec, [req])
        outcome = out.wait(
            lambda req=req: [
                e
                for e in out.events(ExecutionFailed) + out.events(ExecutionSucceeded)
                if e.execution_id == req.execution_id
            ],
            what=f"the outcome of probe {req.execution_id}",
        )
        if isinstance(outcome[0], ExecutionFailed) and outcome[0].error_class == "PolicyRefused":
            return
    raise AssertionError(f"the executor never refused under {version}")


def test_a_review_of_a_recommendation_never_decided_is_refused_after_waiting(
    pipeline: Pipeline,
) -> None:
    # No CaseOpened and no recommendation on the topics: no decision will ever come.
    ghost = recommendation("ghost-1", RESET)
    pipeline.submit(review(ghost, "sam", ("supervisor",)))
    out = pipeline.out

    denied = pipeline.refused(
        "ghost-1", "the review to give up waiting (review_wait_s is 3 s here)", timeout_s=30
    )
    assert (denied.reason, denied.recommendation_id) == ("unknown_item", ghost.recommendation_id)
    pipeline.nothing_pending()
    assert len(out.events(ReviewDenied, case_id="ghost-1")) >= 1
    assert out.events(ReviewRecorded, case_id="ghost-1") == []
