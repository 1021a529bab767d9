"""Which queue items and actions an operator may see and take (pure; no I/O).

The rules themselves are policy.approval's, the ones the approve processor applies when it
re-checks every review (refusing with ReviewDenied); here they become HTTP answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from console.auth import Operator
from policy import approval
from policy.model import Policy
from schemas.events import ActionSpec

# AI output is shown to operators only in these phases (architecture §1): in shadow it is
# recorded and compared later, and out-of-scope cases never expose it.
SHOWN_PHASES = ("assisted", "bounded")
AI_EVENTS = ("RecommendationProduced", "ModelOutputRejected", "GuardrailDecided")
# HTTP status of an override refusal by reason; any envelope finding is 422.
OVERRIDE_STATUS = {
    approval.UNKNOWN_ACTION: 422,
    approval.UNKNOWN_WORKFLOW: 409,
    approval.ROLE_NOT_ELIGIBLE: 403,
}
# HTTP status of a review refusal by reason.
REVIEW_STATUS = {approval.DUPLICATE_APPROVER: 409}


def review_refusal(
    operator: Operator, eligible_roles: Sequence[str], approvers: Sequence[str]
) -> str | None:
    """Why `operator` may not approve or reject this item, or None when they may."""
    refusal = approval.review_refusal(operator.name, operator.roles, eligible_roles, approvers)
    return None if refusal is None else refusal.detail


def verdict_refusal(
    operator: Operator,
    verdict: str,
    eligible_roles: Sequence[str],
    approvers: Sequence[str],
    proposed_by: str | None,
    action_name: str | None,
) -> tuple[int, str] | None:
    """(HTTP status, message) when the approve processor would refuse `operator`'s
    `verdict` on this item for who they are, else None."""
    refusal = approval.review_refusal(
        operator.name,
        operator.roles,
        eligible_roles,
        approvers,
        approving=verdict == "approve",
        proposed_by=proposed_by,
        action_name=action_name or "this action",
    )
    if refusal is None:
        return None
    return REVIEW_STATUS.get(refusal.reason, 403), refusal.detail


def override_choices(operator: Operator, policy: Policy, workflow: str | None) -> list[str]:
    """Catalog actions of the item's workflow that `operator` may override to."""
    wf = policy.workflows.get(workflow or "")
    if wf is None:
        return []
    return [
        name
        for name, rule in wf.actions.items()
        if rule.mode != "prohibited"
        and (entry := policy.action(name)) is not None
        and approval.may_approve(policy, entry, operator.roles)
    ]


def override_refusal(
    operator: Operator, policy: Policy, workflow: str | None, action: ActionSpec
) -> tuple[int, str] | None:
    """(HTTP status, message) when the override cannot be accepted, else None: the approve
    processor's own rule (policy.approval.override_refusal), as an HTTP answer."""
    refusals = approval.override_refusals(policy, workflow, action, operator.name, operator.roles)
    if not refusals:
        return None
    # Who before what: an operator who may not approve the action hears that first.
    refusal = next((r for r in refusals if r.reason == approval.ROLE_NOT_ELIGIBLE), refusals[0])
    return OVERRIDE_STATUS.get(refusal.reason, 422), refusal.detail


def may_reclassify(operator: Operator, policy: Policy | None) -> bool:
    """Any operator role may correct a case's class (a role the policy still defines)."""
    if policy is None:
        return bool(operator.roles)
    return bool(set(operator.roles) & set(policy.roles))


def ai_output_hidden(phase: str | None, status: str | None) -> bool:
    """Hide recommendations and guard decisions of shadow and out-of-scope cases until the
    case is resolved, so operators resolve them unaided and the comparison stays fair."""
    return phase not in SHOWN_PHASES and status != "resolved"
