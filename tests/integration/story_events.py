"""Event builders shared by the hand-scripted stories (scenario.py, console_story.py): each
event's ids derive from its case, recommendation or execution the same way in both stories,
as the processors derive them; what happened (times, actors, values) is the story's."""

from __future__ import annotations

from datetime import datetime

from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ExecutionFailed,
    ExecutionRequested,
    GuardrailDecided,
    Provenance,
    RecommendationProduced,
    ReviewRecorded,
    SimilarCase,
)

POLICY_VERSION = "2026.11.1"  # the default policy's, which both stories publish


def recommendation_made(
    case: str,
    rec: str,
    action: ActionSpec | None,
    category: str,
    at: datetime,
    workflow: str,
    *,
    summary: str,
    confidence: float,
    similar: SimilarCase,
    rationale: str,
    provenance: Provenance,
) -> RecommendationProduced:
    return RecommendationProduced(
        event_id=f"rp-{rec}",
        case_id=case,
        occurred_at=at,
        causation_id=f"open-{case}",
        correlation_id=f"open-{case}",
        recommendation_id=rec,
        workflow=workflow,
        summary=summary,
        category=category,
        confidence=confidence,
        similar_cases=(similar,),
        action=action,
        rationale=rationale,
        provenance=provenance,
    )


def guard_decided(
    case: str,
    rec: str,
    outcome: str,
    workflow: str,
    phase: str,
    action: ActionSpec | None,
    at: datetime,
    approvals: int = 0,
    roles: tuple[str, ...] = (),
    expires: datetime | None = None,
    reasons: tuple[str, ...] = (),
) -> GuardrailDecided:
    """The guard's decision on `rec`; its reasons are the outcome unless given."""
    return GuardrailDecided(
        event_id=f"gd-{rec}",
        case_id=case,
        occurred_at=at,
        causation_id=f"rp-{rec}",
        correlation_id=f"open-{case}",
        decision_id=f"d-{rec}",
        recommendation_id=rec,
        workflow=workflow,
        phase=phase,
        outcome=outcome,
        reasons=reasons or (outcome,),
        action=action,
        policy_version=POLICY_VERSION,
        approvals_required=approvals,
        eligible_roles=roles,
        expires_at=expires,
    )


def review_recorded(
    case: str,
    rec: str,
    actor: str,
    roles: tuple[str, ...],
    verdict: str,
    received: int,
    required: int,
    at: datetime,
    action: ActionSpec | None = None,
) -> ReviewRecorded:
    return ReviewRecorded(
        event_id=f"rr-{rec}-{actor}",
        case_id=case,
        occurred_at=at,
        review_id=f"rv-{rec}-{actor}",
        recommendation_id=rec,
        actor=actor,
        roles=roles,
        verdict=verdict,
        approvals_received=received,
        approvals_required=required,
        action=action,
    )


def approval_completed(
    case: str,
    rec: str,
    outcome: str,
    approvers: tuple[str, ...],
    action: ActionSpec | None,
    at: datetime,
) -> ApprovalCompleted:
    return ApprovalCompleted(
        event_id=f"ac-{rec}",
        case_id=case,
        occurred_at=at,
        recommendation_id=rec,
        outcome=outcome,
        approvers=approvers,
        action=action,
    )


def execution_requested(
    case: str, rec: str, ex: str, action: ActionSpec, mode: str, by: str, at: datetime
) -> ExecutionRequested:
    return ExecutionRequested(
        event_id=f"er-{ex}",
        case_id=case,
        occurred_at=at,
        execution_id=ex,
        recommendation_id=rec,
        action=action,
        mode=mode,
        requested_by=by,
        policy_version=POLICY_VERSION,
    )


def execution_failed(
    case: str,
    ex: str,
    action_name: str,
    at: datetime,
    error_class: str,
    *,
    retriable: bool,
    timed_out: bool,
    message: str,
    duration_ms: float,
) -> ExecutionFailed:
    return ExecutionFailed(
        event_id=f"ef-{ex}",
        case_id=case,
        occurred_at=at,
        execution_id=ex,
        action_name=action_name,
        error_class=error_class,
        retriable=retriable,
        timed_out=timed_out,
        message=message,
        duration_ms=duration_ms,
    )
