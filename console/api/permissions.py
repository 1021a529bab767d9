"""Which queue items and actions an operator may see and take (pure; no I/O).

This is a convenience filter with clear messages, not the guard: the approve processor
re-checks every review against the policy and refuses with ReviewDenied.
"""

from __future__ import annotations

from collections.abc import Sequence

from console.auth import Operator
from policy.checks import action_findings, is_denied
from policy.model import Policy
from schemas.events import ActionSpec

# AI output is shown to operators only in these phases (DESIGN §1): in shadow it is
# recorded and compared later, and out-of-scope cases never expose it.
SHOWN_PHASES = ("assisted", "bounded")
AI_EVENTS = ("RecommendationProduced", "ModelOutputRejected", "GuardrailDecided")


def review_refusal(
    operator: Operator, eligible_roles: Sequence[str], approvers: Sequence[str]
) -> str | None:
    """Why `operator` may not approve or reject this item, or None when they may."""
    if not set(operator.roles) & set(eligible_roles):
        return (
            f"operator {operator.name} holds {', '.join(operator.roles)}; this item needs "
            f"one of {', '.join(eligible_roles) or 'no role (nobody may review it)'}"
        )
    if operator.name in approvers:
        return f"operator {operator.name} already approved this item; one operator counts once"
    return None


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
        and set(operator.roles) & set(policy.approver_roles(entry))
    ]


def override_refusal(
    operator: Operator, policy: Policy, workflow: str | None, action: ActionSpec
) -> tuple[int, str] | None:
    """(HTTP status, message) when the override cannot be accepted, else None.

    Who may: the roles that may approve the action (its approval roles, else every role
    holding its catalog permission) — the overriding operator becomes its first approver.
    What may: the same envelope check the approve processor applies.
    """
    entry = policy.action(action.name)
    if entry is None:
        return 422, f"{action.name!r} is not in the action catalog of policy {policy.version}"
    wf = policy.workflows.get(workflow or "")
    if wf is None:
        return 409, f"workflow {workflow!r} is not in policy {policy.version}"
    allowed = policy.approver_roles(entry)
    if not set(operator.roles) & set(allowed):
        return 403, (
            f"operator {operator.name} holds {', '.join(operator.roles)}; overriding to "
            f"{action.name} needs permission {entry.permission} "
            f"(roles: {', '.join(allowed)})"
        )
    findings = action_findings(action, wf, policy)
    rule = wf.actions.get(action.name)
    if rule is None or is_denied(findings, rule.on_out_of_bounds):
        return 422, "; ".join(f.detail for f in findings)
    return None


def may_reclassify(operator: Operator, policy: Policy | None) -> bool:
    """Any operator role may correct a case's class (a role the policy still defines)."""
    if policy is None:
        return bool(operator.roles)
    return bool(set(operator.roles) & set(policy.roles))


def ai_output_hidden(phase: str | None, status: str | None) -> bool:
    """Hide recommendations and guard decisions of shadow and out-of-scope cases until the
    case is resolved, so operators resolve them unaided and the comparison stays fair."""
    return phase not in SHOWN_PHASES and status != "resolved"
