"""One realistic example event of every type, for contract tests, docs and demos.

Values are deliberately non-trivial: unicode, every scalar kind in maps, nested actions,
empty and non-empty optionals, millisecond timestamps (what Avro keeps).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    CaseOpened,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    DeadLettered,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    ModelOutputRejected,
    PolicyPublished,
    Provenance,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    Routing,
    SimilarCase,
    derived_event_id,
    review_binding,
)

CASE_ID = "case-0001"
OPENED_ID = "6a0c5f1e-8a7b-4d4e-9d2a-0b1c2d3e4f50"
AT = datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)

REFUND = ActionSpec(
    name="refund_order",
    params={"order_id": "A-1001", "amount": 42.5, "items": 2, "notify": True, "note": None},
)


def _ids(kind: str) -> dict[str, str]:
    """Common fields of an event derived, directly or not, from the sample CaseOpened."""
    return {
        "event_id": derived_event_id(OPENED_ID, kind),
        "case_id": CASE_ID,
        "causation_id": OPENED_ID,
        "correlation_id": OPENED_ID,
    }


def sample_events() -> list[Event]:
    """One event per type, in the order a case's life would produce them."""
    return [
        CaseOpened(
            event_id=OPENED_ID,
            case_id=CASE_ID,
            occurred_at=AT,
            source="shop-helpdesk",
            channel="email",
            queue="refunds",
            team="tier1-emea",
            issue_class="damaged_item",
            subject="Paket beschädigt: Rückerstattung? 📦",
            description="The mug arrived in pieces.\nCan I get my money back?",
            priority="high",
            customer={"id": "cust-77", "name": "Zoë Ångström", "email": "zoe@example.org"},
            attributes={"order_id": "A-1001", "amount": 42.5, "items": 2, "gift": False},
        ),
        CaseUpdated(
            event_id="0d6f3c1a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
            case_id=CASE_ID,
            occurred_at=AT + timedelta(minutes=3),
            actor="agent-12",
            changes={"priority": "urgent", "sla_minutes": -30, "vip": True, "old": None},
            note="Customer called twice.",
        ),
        CaseResolved(
            event_id="1e7a4d2b-2c3d-4e5f-9a01-b2c3d4e5f6a7",
            case_id=CASE_ID,
            occurred_at=AT + timedelta(hours=2),
            resolved_by="agent-12",
            resolution_code="refunded",
            category="damaged_item",
            actions_taken=(
                REFUND,
                ActionSpec(name="send_apology", params={"template": "damaged-v2"}),
                ActionSpec(name="close_ticket"),
            ),
        ),
        CaseReopened(
            event_id="2f8b5e3c-3d4e-4f60-8b12-c3d4e5f6a7b8",
            case_id=CASE_ID,
            occurred_at=AT + timedelta(days=1),
            reason="Refund never arrived",
        ),
        RecommendationProduced(
            **_ids("recommend"),
            occurred_at=AT + timedelta(seconds=2),
            recommendation_id="rec-1",
            workflow="refund_damaged",
            summary="Damaged item, order under 50 EUR: refund in full.",
            category="damaged_item",
            confidence=0.87,
            similar_cases=(
                SimilarCase(case_id="case-0042", similarity=0.93),
                SimilarCase(case_id="case-0107", similarity=0.71),
            ),
            action=REFUND,
            rationale="Three similar cases were refunded; amount is within bounds.",
            provenance=Provenance(
                recommender="llm",
                model="gpt-4o-mini",
                prompt_version="p-2026-01",
                policy_version="7",
                fields_seen=("subject", "description", "attributes.amount"),
                input_sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                prompt_tokens=812,
                completion_tokens=96,
                latency_ms=1234.5,
                cost_usd=0.00041,
                model_version="fit-3",
            ),
            routing=Routing(
                channel="email",
                queue="orders",
                team="tier1",
                issue_class=None,
                priority="normal",
                source="crm",
            ),
        ),
        ModelOutputRejected(
            **_ids("reject-output"),
            occurred_at=AT + timedelta(seconds=2),
            recommendation_id="rec-1",
            model="gpt-4o-mini",
            raw_output='{"action": "refund_order", "amount": "lots"}',
            errors=("params.amount: not a number", "missing field: rationale"),
        ),
        GuardrailDecided(
            **_ids("guard"),
            occurred_at=AT + timedelta(seconds=3),
            decision_id="dec-1",
            recommendation_id="rec-1",
            workflow="refund_damaged",
            phase="assisted",
            outcome="approval_required",
            reasons=("phase_assisted", "amount_above_auto_limit"),
            action=REFUND,
            policy_version="7",
            approvals_required=2,
            eligible_roles=("team_lead", "refund_specialist"),
            expires_at=AT + timedelta(hours=4),
        ),
        ReviewSubmitted(
            **_ids("review-1"),
            occurred_at=AT + timedelta(minutes=10),
            review_id="rev-1",
            recommendation_id="rec-1",
            actor="op-anna",
            roles=("team_lead",),
            verdict="override",
            reason="Refund shipping too",
            override_action=ActionSpec(
                name="refund_order", params={"order_id": "A-1001", "amount": 47.4}
            ),
            idempotency_key="console-7f3a",
            **review_binding(REFUND, "7"),  # the item the operator was shown
        ),
        CaseReclassified(
            **_ids("reclassify-1"),
            occurred_at=AT + timedelta(minutes=11),
            review_id="rev-2",
            actor="op-anna",
            roles=("team_lead", "qa"),
            category="lost_in_transit",
        ),
        ReviewRecorded(
            **_ids("record-1"),
            occurred_at=AT + timedelta(minutes=10, seconds=1),
            review_id="rev-1",
            recommendation_id="rec-1",
            actor="op-anna",
            roles=("team_lead",),
            verdict="override",
            approvals_received=1,
            approvals_required=2,
        ),
        ReviewDenied(
            **_ids("deny-1"),
            occurred_at=AT + timedelta(minutes=12),
            review_id="rev-3",
            recommendation_id=None,
            actor="op-bob",
            reason="unknown_item",
            detail="No open recommendation rec-9 for case-0001",
        ),
        ApprovalCompleted(
            **_ids("approval"),
            occurred_at=AT + timedelta(minutes=15),
            recommendation_id="rec-1",
            outcome="approved",
            approvers=("op-anna", "op-carl"),
            action=ActionSpec(name="refund_order", params={"order_id": "A-1001", "amount": 47.4}),
        ),
        ApprovalExpired(
            **_ids("expire"),
            occurred_at=AT + timedelta(hours=4, seconds=1),
            recommendation_id="rec-2",
            expired_at=AT + timedelta(hours=4),
            approvals_received=1,
        ),
        ExecutionRequested(
            **_ids("execute"),
            occurred_at=AT + timedelta(minutes=15, seconds=1),
            execution_id="exe-1",
            recommendation_id="rec-1",
            action=REFUND,
            mode="approved",
            requested_by="approve",
            policy_version="7",
        ),
        ExecutionSucceeded(
            **_ids("execute-ok"),
            occurred_at=AT + timedelta(minutes=15, seconds=2),
            execution_id="exe-1",
            action_name="refund_order",
            result={"refund_id": "R-555", "amount": 47.4, "attempts": 1, "partial": False},
            duration_ms=812.25,
        ),
        ExecutionFailed(
            **_ids("execute-failed"),
            occurred_at=AT + timedelta(minutes=15, seconds=30),
            execution_id="exe-2",
            action_name="send_apology",
            error_class="TimeoutError",
            retriable=True,
            timed_out=True,
            message="mail gateway did not answer within 30 s",
            duration_ms=30000.0,
        ),
        ExecutionRolledBack(
            **_ids("rollback"),
            occurred_at=AT + timedelta(minutes=16),
            execution_id="exe-1",
            action_name="refund_order",
            rollback_action="void_refund",
            reason="Duplicate refund detected",
            succeeded=False,
        ),
        PolicyPublished(
            event_id="3a9c6f4d-4e5f-4a71-9c23-d4e5f6a7b8c9",
            case_id="policy",
            occurred_at=AT - timedelta(days=1),
            version="7",
            sha256="2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            author="ops-lead@example.org",
            document="version: 7\nworkflows:\n  refund_damaged:\n    phase: assisted  # ✓\n",
        ),
        DeadLettered(
            event_id="4bad7a5e-5f60-4b82-8d34-e5f6a7b8c9d0",
            case_id="",
            occurred_at=AT + timedelta(minutes=1),
            causation_id=None,
            source_topic="casegate.cases",
            source_partition=3,
            source_offset=2**40 + 7,
            consumer="casegate-recommend",
            key=b"case-0001",
            raw=b"\xc3\x01\x00\xff garbage",
            headers={"event_type": b"CaseOpened", "trace": b"\x00\x01"},
            reason="unknown schema fingerprint 0x00ff206761726261",
            error_class="UnknownSchema",
        ),
    ]
