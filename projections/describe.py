"""Who did what, in one line: the actor, policy version and account of every event type.

Shared by the audit log, the case timeline and `casegate trace`, so an event reads the same
everywhere.
"""

from __future__ import annotations

from schemas.events import (
    AccessReviewed,
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    CaseOpened,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    CustomerErased,
    DeadLettered,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    KillSwitchPulled,
    ModelOutputRejected,
    PolicyPublished,
    PromotionApprovalRecorded,
    PromotionApprovalSubmitted,
    PromotionProposed,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    RolloutRequestRefused,
    WorkflowDemoted,
    WorkflowPromoted,
)


def action_text(action: ActionSpec | None) -> str:
    if action is None:
        return "no action"
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(action.params.items()))
    return f"{action.name}({params})"


def actor_of(e: Event) -> str | None:
    """The person, service or component the event is attributed to."""
    match e:
        case CaseOpened():
            return e.source
        case CaseUpdated() | ReviewSubmitted() | ReviewRecorded() | ReviewDenied():
            return e.actor
        case CustomerErased():
            return e.actor
        case CaseReclassified():
            return e.actor
        case CaseResolved():
            return e.resolved_by
        case RecommendationProduced():
            return f"recommender:{e.provenance.recommender}"
        case ModelOutputRejected():
            return f"model:{e.model}"
        case GuardrailDecided():
            return "guard"
        case ApprovalCompleted():
            return ",".join(e.approvers) or "approve"
        case ApprovalExpired():
            return "approve"
        case ExecutionRequested():
            return e.requested_by
        case ExecutionSucceeded() | ExecutionFailed() | ExecutionRolledBack():
            return "execute"
        case PolicyPublished():
            return e.author
        case AccessReviewed():
            return e.reviewer
        case DeadLettered():
            return e.consumer
        case (
            PromotionApprovalSubmitted()
            | KillSwitchPulled()
            | PromotionApprovalRecorded()
            | RolloutRequestRefused()
            | WorkflowDemoted()
        ):
            return e.actor
        case PromotionProposed():
            return e.proposed_by
        case WorkflowPromoted():
            return ",".join(e.approvers)
    return None


def policy_version_of(e: Event) -> str | None:
    match e:
        case GuardrailDecided() | ExecutionRequested():
            return e.policy_version
        case RecommendationProduced():
            return e.provenance.policy_version
        case PolicyPublished() | WorkflowPromoted() | WorkflowDemoted():
            return e.policy_version if not isinstance(e, PolicyPublished) else e.version
        case PromotionProposed() | PromotionApprovalSubmitted():
            return e.policy_version
    return None


def summary_of(e: Event) -> str:
    """A one-line account for people reading a trace."""
    match e:
        case CaseOpened():
            return (
                f"opened via {e.channel} in {e.queue}/{e.team}: {e.subject!r} "
                f"(priority {e.priority})"
            )
        case CaseUpdated():
            changes = ", ".join(f"{k}={v!r}" for k, v in sorted(e.changes.items()))
            return f"updated by {e.actor}: {changes or 'no field changes'}"
        case CaseResolved():
            actions = ", ".join(action_text(a) for a in e.actions_taken) or "no actions"
            return f"resolved by {e.resolved_by} as {e.category} ({e.resolution_code}): {actions}"
        case CaseReopened():
            return f"reopened: {e.reason}"
        case RecommendationProduced():
            seen = ", ".join(e.provenance.fields_seen)
            return (
                f"recommended {action_text(e.action)}, category {e.category} "
                f"(confidence {e.confidence:.2f}) by {e.provenance.recommender}; "
                f"model saw: {seen}"
            )
        case ModelOutputRejected():
            return f"model output from {e.model} rejected: {'; '.join(e.errors)}"
        case GuardrailDecided():
            return (
                f"guard: {e.outcome} for {action_text(e.action)} in workflow {e.workflow} "
                f"({e.phase}), reasons {', '.join(e.reasons)}; policy {e.policy_version}"
            )
        case ReviewSubmitted():
            return f"review submitted by {e.actor}: {e.verdict}"
        case ReviewRecorded():
            return (
                f"review recorded: {e.verdict} by {e.actor} ({', '.join(e.roles)}), "
                f"{e.approvals_received}/{e.approvals_required} approvals"
            )
        case ReviewDenied():
            return f"review by {e.actor} refused: {e.reason} — {e.detail}"
        case CaseReclassified():
            return f"reclassified as {e.category} by {e.actor}"
        case ApprovalCompleted():
            return f"approval {e.outcome} by {', '.join(e.approvers)}: {action_text(e.action)}"
        case ApprovalExpired():
            return f"approval expired with {e.approvals_received} approval(s)"
        case ExecutionRequested():
            return f"execution requested ({e.mode}) of {action_text(e.action)} by {e.requested_by}"
        case ExecutionSucceeded():
            return f"executed {e.action_name} in {e.duration_ms:.0f} ms"
        case ExecutionFailed():
            kind = "timed out" if e.timed_out else f"failed ({e.error_class})"
            return f"{e.action_name} {kind}: {e.message}"
        case ExecutionRolledBack():
            ok = "rolled back" if e.succeeded else "rollback FAILED"
            return f"{e.action_name} {ok} with {e.rollback_action}: {e.reason}"
        case PolicyPublished():
            return f"policy {e.version} published by {e.author} (sha256 {e.sha256[:12]})"
        case DeadLettered():
            return f"dead-lettered by {e.consumer}: {e.reason}"
        case PromotionProposed():
            return (
                f"{e.workflow} proposed for {e.from_phase} -> {e.to_phase} under policy "
                f"{e.policy_version}: sample {e.sample} of {e.min_sample}, needs "
                f"{e.approvals_required} approvals ({', '.join(e.approver_roles)})"
            )
        case PromotionApprovalSubmitted():
            return f"{e.actor} approves proposal {e.proposal_id} via {e.via}"
        case PromotionApprovalRecorded():
            return f"approval by {e.actor} recorded: {e.approvals_received}/{e.approvals_required}"
        case KillSwitchPulled():
            return f"kill switch pulled by {e.actor} via {e.via}: {e.reason}"
        case RolloutRequestRefused():
            return f"{e.request} by {e.actor} refused: {e.reason}"
        case WorkflowPromoted():
            return (
                f"{e.workflow} promoted {e.from_phase} -> {e.to_phase}: policy "
                f"{e.policy_version} approved by {', '.join(e.approvers)}"
            )
        case WorkflowDemoted():
            return (
                f"{e.workflow} demoted {e.from_phase} -> {e.to_phase} ({e.trigger}) by "
                f"{e.actor}: {e.reason}; policy {e.policy_version}"
            )
        case CustomerErased():
            return f"customer {e.customer_ref[:12]} erased by {e.actor} ({len(e.key_ids)} keys)"
        case AccessReviewed():
            flagged = sum(o.unused for o in e.operators)
            return (
                f"access review by {e.reviewer}: {len(e.operators)} operator(s), "
                f"{flagged} flagged unused"
            )
    return e.event_type
