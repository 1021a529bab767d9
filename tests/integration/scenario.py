"""A hand-scripted story of eight cases touching every read-model rule, with the figures the
read models must show for it worked out by hand in test_read_models.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from policy.loader import default_policy_path, load_policy_file
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    CaseOpened,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    Event,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    PolicyPublished,
    Provenance,
    RecommendationProduced,
    ReviewRecorded,
    SimilarCase,
)
from tests.integration.story_events import (
    POLICY_VERSION,
    approval_completed,
    execution_failed,
    execution_requested,
    guard_decided,
    recommendation_made,
    review_recorded,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def opened(case: str, queue: str, team: str, channel: str, minute: float = 0) -> CaseOpened:
    return CaseOpened(
        event_id=f"open-{case}",
        case_id=case,
        occurred_at=at(minute),
        source="helpdesk",
        channel=channel,
        queue=queue,
        team=team,
        issue_class=None,
        subject=f"subject of {case}",
        description="<script>alert(1)</script> '; DROP TABLE case_state; --",
        priority="normal",
        customer={"email": "x@example.com"},
        attributes={"order_id": "ORD-1"},
    )


def recommended(
    case: str, rec: str, action: ActionSpec | None, category: str, minute: float, workflow: str
) -> RecommendationProduced:
    return recommendation_made(
        case,
        rec,
        action,
        category,
        at(minute),
        workflow,
        summary=f"summary of {case}",
        confidence=0.8,
        similar=SimilarCase(case_id="old-1", similarity=0.9),
        rationale=f"3 of 4 similar cases were {category}",
        provenance=Provenance(
            recommender="baseline",
            policy_version=POLICY_VERSION,
            fields_seen=("subject", "description"),
            input_sha256="ab" * 32,
        ),
    )


def decided(
    case: str,
    rec: str,
    outcome: str,
    workflow: str,
    phase: str,
    action: ActionSpec | None,
    minute: float,
    approvals: int = 0,
    reasons: tuple[str, ...] = (),
) -> GuardrailDecided:
    """A decision; one needing approvals is open to supervisors and finance leads for an
    hour."""
    return guard_decided(
        case,
        rec,
        outcome,
        workflow,
        phase,
        action,
        at(minute),
        approvals,
        ("supervisor", "finance_lead") if approvals else (),
        at(minute + 60) if approvals else None,
        reasons,
    )


def reviewed(
    case: str, rec: str, actor: str, verdict: str, received: int, required: int, minute: float
) -> ReviewRecorded:
    return review_recorded(
        case, rec, actor, ("supervisor",), verdict, received, required, at(minute)
    )


def completed(
    case: str,
    rec: str,
    outcome: str,
    approvers: tuple[str, ...],
    action: ActionSpec | None,
    minute: float,
) -> ApprovalCompleted:
    return approval_completed(case, rec, outcome, approvers, action, at(minute))


def requested(
    case: str, rec: str, ex: str, action: ActionSpec, mode: str, minute: float
) -> ExecutionRequested:
    by = "policy" if mode == "auto" else "alice,bob"
    return execution_requested(case, rec, ex, action, mode, by, at(minute))


def resolved(case: str, category: str, actions: tuple[str, ...], minute: float) -> CaseResolved:
    return CaseResolved(
        event_id=f"res-{case}",
        case_id=case,
        occurred_at=at(minute),
        resolved_by="agent.kim",
        resolution_code="done",
        category=category,
        actions_taken=tuple(ActionSpec(name=a) for a in actions),
    )


RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
REFUND = ActionSpec(name="refund_payment", params={"amount": 50.0, "order_id": "ORD-1"})
PLAN = ActionSpec(name="change_plan", params={"plan": "basic"})
ESCALATE = ActionSpec(name="escalate_to_specialist", params={"team": "finance"})
CLOSE = ActionSpec(name="close_account")
RESHIP = ActionSpec(name="reship_order", params={"order_id": "ORD-1"})


def policy_event() -> PolicyPublished:
    loaded = load_policy_file(default_policy_path())
    return PolicyPublished(
        event_id="policy-1",
        case_id="policy",
        occurred_at=T0,
        version=loaded.version,
        sha256=loaded.sha256,
        author="ops",
        document=loaded.text,
    )


def story() -> list[Event]:
    """Every event of the scenario, in the order upstream and processors would emit them."""
    b = ("billing", "finance")
    return [
        policy_event(),
        # c1 identity, bounded: auto-authorized, runs, resolved after 10 minutes.
        opened("c1", "identity", "access", "web"),
        recommended("c1", "r1", RESET, "password_reset", 1, "identity_access"),
        decided("c1", "r1", "auto_authorized", "identity_access", "bounded", RESET, 1),
        requested("c1", "r1", "x1", RESET, "auto", 1),
        ExecutionSucceeded(
            event_id="es-x1",
            case_id="c1",
            occurred_at=at(2),
            execution_id="x1",
            action_name="reset_password",
            result={"reset_sent": True},
            duration_ms=12.0,
        ),
        resolved("c1", "password_reset", ("reset_password",), 10),
        # c2 billing, assisted: two approvers, execution times out; resolved, then reopened.
        opened("c2", *b, "email"),
        recommended("c2", "r2", REFUND, "double_charge", 1, "billing"),
        decided("c2", "r2", "approval_required", "billing", "assisted", REFUND, 1, approvals=2),
        reviewed("c2", "r2", "alice", "approve", 1, 2, 5),
        reviewed("c2", "r2", "bob", "approve", 2, 2, 6),
        completed("c2", "r2", "approved", ("alice", "bob"), REFUND, 6),
        requested("c2", "r2", "x2", REFUND, "approved", 6),
        execution_failed(
            "c2",
            "x2",
            "refund_payment",
            at(7),
            "Timeout",
            retriable=True,
            timed_out=True,
            message="no answer within 30 s",
            duration_ms=30000.0,
        ),
        resolved("c2", "double_charge", ("refund_payment",), 30),
        CaseReopened(event_id="reo-c2", case_id="c2", occurred_at=at(3000), reason="again"),
        # c3 billing: overridden to an escalation whose post-condition fails -> rolled back.
        opened("c3", *b, "chat"),
        recommended("c3", "r3", PLAN, "plan_change", 1, "billing"),
        decided("c3", "r3", "approval_required", "billing", "assisted", PLAN, 1, approvals=1),
        reviewed("c3", "r3", "alice", "override", 1, 1, 4),
        completed("c3", "r3", "approved", ("alice",), ESCALATE, 4),
        requested("c3", "r3", "x3", ESCALATE, "approved", 4),
        execution_failed(
            "c3",
            "x3",
            "escalate_to_specialist",
            at(5),
            "PostConditionFailed",
            retriable=False,
            timed_out=False,
            message="no ack",
            duration_ms=5.0,
        ),
        ExecutionRolledBack(
            event_id="rb-x3",
            case_id="c3",
            occurred_at=at(5),
            execution_id="x3",
            action_name="escalate_to_specialist",
            rollback_action="escalate_to_specialist",
            reason="no ack",
            succeeded=True,
        ),
        resolved("c3", "plan_change", ("change_plan",), 20),
        # c4 billing: a prohibited action is denied.
        opened("c4", *b, "email"),
        recommended("c4", "r4", CLOSE, "plan_change", 1, "billing"),
        decided(
            "c4", "r4", "denied", "billing", "assisted", CLOSE, 1, reasons=("action_prohibited",)
        ),
        # c5 shipping, shadow: recorded only; operators did what the model said.
        opened("c5", "shipping", "logistics", "phone"),
        recommended("c5", "r5", RESHIP, "delivery_delay", 1, "shipping"),
        decided("c5", "r5", "shadowed", "shipping", "shadow", RESHIP, 1, reasons=("phase_shadow",)),
        resolved("c5", "delivery_delay", ("reship_order",), 45),
        # c6 billing: rejected, and the case reclassified by an operator.
        opened("c6", *b, "web"),
        recommended("c6", "r6", REFUND, "double_charge", 1, "billing"),
        decided("c6", "r6", "approval_required", "billing", "assisted", REFUND, 1, approvals=2),
        reviewed("c6", "r6", "bob", "reject", 0, 2, 3),
        completed("c6", "r6", "rejected", ("bob",), REFUND, 3),
        CaseReclassified(
            event_id="rc-c6",
            case_id="c6",
            occurred_at=at(8),
            review_id="rv-c6",
            actor="carol",
            roles=("agent",),
            category="refund_request",
        ),
        # c7 billing: nobody looked in time.
        opened("c7", *b, "email"),
        recommended("c7", "r7", REFUND, "double_charge", 1, "billing"),
        decided("c7", "r7", "approval_required", "billing", "assisted", REFUND, 1, approvals=2),
        ApprovalExpired(
            event_id="ax-r7",
            case_id="c7",
            occurred_at=at(61),
            recommendation_id="r7",
            expired_at=at(61),
            approvals_received=0,
        ),
        # c8 billing: still waiting in the queue.
        opened("c8", *b, "chat"),
        recommended("c8", "r8", REFUND, "double_charge", 1, "billing"),
        decided("c8", "r8", "approval_required", "billing", "assisted", REFUND, 1, approvals=2),
    ]


def expected_billing_metrics() -> dict[str, Any]:
    """Worked out by hand from story() for workflow 'billing' (all on T0's day)."""
    return {
        "recommendations": 6,
        "decided": 6,
        "denied": 1,
        "reviewed": 3,
        "accepted": 1,
        "overridden": 1,
        "rejected": 1,
        "executions": 2,
        "executions_failed": 2,
        "executions_rolled_back": 1,
        "cases_opened": 6,
        # first actions: c2 review at 5 min, c3 review at 4, c6 review at 3.
        "first_actions": 3,
        "first_action_seconds": (5 + 4 + 3) * 60.0,
        # resolved: c2 (then reopened, so not resolved now) and c3 (after 20 minutes).
        "cases_resolved": 2,
        "resolved_now": 1,
        "resolution_seconds": 20 * 60.0,
        "cases_reopened": 1,
    }
