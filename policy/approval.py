"""Who may approve what: one pure rule for the console (what it shows and accepts) and the
approve, execute and rollout processors (what they record), so the console never offers
what a processor then refuses.

Each check answers with a `Refusal` (a reason code, as ReviewDenied and
RolloutRequestRefused carry it, and a sentence for people) or None when the operator may.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from policy.catalog import Action
from policy.checks import UNKNOWN_ACTION, action_findings, as_policy, is_denied
from policy.loader import LoadedPolicy
from policy.model import Policy
from schemas.events import ActionSpec

# Reason codes, used verbatim in ReviewDenied and RolloutRequestRefused.
ROLE_NOT_ELIGIBLE, DUPLICATE_APPROVER = "role_not_eligible", "duplicate_approver"
PROPOSER_CANNOT_APPROVE, ALREADY_APPROVED = "proposer_cannot_approve", "already_approved"
UNKNOWN_WORKFLOW, NOT_PERMITTED = "unknown_workflow", "not_permitted"
# The rollout processor proposes every promotion, so its name never approves one.
ROLLOUT_PROPOSER = "rollout"


class Refusal(NamedTuple):
    """Why an operator may not do it: `reason` a code, `detail` for people."""

    reason: str
    detail: str


class Quorum(NamedTuple):
    """What approving an action takes: `people` distinct people holding one of `roles`."""

    people: int
    roles: tuple[str, ...]


def quorum(policy: Policy | LoadedPolicy, entry: Action) -> Quorum:
    """The approvals `entry` needs under `policy`: its approval roles (else every role with
    its permission), and at least one person, since a human must look at least once even
    when the catalog asks no approvals."""
    return Quorum(max(1, entry.approvals.count), as_policy(policy).approver_roles(entry))


def may_approve(policy: Policy | LoadedPolicy, entry: Action, roles: Sequence[str]) -> bool:
    """Does someone holding `roles` count towards `entry`'s quorum?"""
    return bool(set(roles) & set(quorum(policy, entry).roles))


def review_refusal(
    actor: str,
    roles: Sequence[str],
    eligible_roles: Sequence[str],
    approvers: Sequence[str],
    *,
    approving: bool = False,
    proposed_by: str | None = None,
    action_name: str = "this action",
) -> Refusal | None:
    """Why `actor` may not review an item open to `eligible_roles` and already approved by
    `approvers` (`approving`: the review is an approval of the item's action, which its
    override's proposer may not give), or None when they may."""
    if not set(roles) & set(eligible_roles):
        return Refusal(
            ROLE_NOT_ELIGIBLE,
            f"operator {actor} holds {', '.join(roles) or 'no role'}; this item needs one of "
            f"{', '.join(eligible_roles) or 'no role (nobody may review it)'}",
        )
    if actor in approvers:
        return Refusal(
            DUPLICATE_APPROVER,
            f"operator {actor} already approved this item; one operator counts once",
        )
    if approving and actor == proposed_by:
        return Refusal(
            PROPOSER_CANNOT_APPROVE,
            f"{actor} proposed {action_name} by override; another operator must approve it",
        )
    return None


def override_refusals(
    policy: Policy | LoadedPolicy,
    workflow: str | None,
    action: ActionSpec,
    actor: str,
    roles: Sequence[str],
) -> list[Refusal]:
    """Every reason `actor` may not replace an item's action of `workflow` by `action`;
    empty when they may.

    What may: a known workflow and action, inside the workflow's envelope (the guard's
    check). Who may: the roles that may approve the action (the overriding operator
    becomes its proposer). An unknown workflow or action is the only reason given; else
    the envelope's comes before the role's, and a caller that answers who before what
    (the console: 403 before 422) picks the role's. Bind the case's values into `action`
    first where the caller has them.
    """
    pol = as_policy(policy)
    wf = pol.workflows.get(workflow or "")
    if wf is None:
        return [Refusal(UNKNOWN_WORKFLOW, f"workflow {workflow!r} is not in policy {pol.version}")]
    entry = pol.action(action.name)
    if entry is None:
        detail = f"{action.name!r} is not in the action catalog of policy {pol.version}"
        return [Refusal(UNKNOWN_ACTION, detail)]
    refusals = []
    findings = action_findings(action, wf, pol)
    rule = wf.actions.get(action.name)
    if rule is None or is_denied(findings, rule.on_out_of_bounds):
        refusals.append(Refusal(findings[0].code, "; ".join(f.detail for f in findings)))
    if not may_approve(pol, entry, roles):
        refusals.append(
            Refusal(
                ROLE_NOT_ELIGIBLE,
                f"operator {actor} holds {', '.join(roles) or 'no role'}; overriding to "
                f"{action.name} needs permission {entry.permission} "
                f"(roles: {', '.join(quorum(pol, entry).roles)})",
            )
        )
    return refusals


def approval_shortfall(
    action_name: str, approvals: Sequence[tuple[str, Sequence[str]]], policy: Policy | LoadedPolicy
) -> str | None:
    """Why these approvals (actor, roles) do not authorize `action_name` under `policy`
    ("<code>: <detail>"), or None when they do.

    One rule for the approve processor at completion and the executor before a run: the
    policy in force may have raised the quorum or changed the roles since the approvals
    were given, and only approvers holding a role the policy names now count, once each.
    """
    pol = as_policy(policy)
    entry = pol.action(action_name)
    if entry is None:
        return f"{UNKNOWN_ACTION}: {action_name!r} is not in the action catalog"
    need = quorum(pol, entry)
    qualified = {actor for actor, held in approvals if set(need.roles) & set(held)}
    if len(qualified) >= need.people:
        return None
    return (
        f"quorum_not_met: {action_name} needs {need.people} approval(s) from "
        f"{', '.join(sorted(need.roles)) or 'no role'}; {len(qualified)} qualify"
    )


def promotion_approver(policy: Policy, workflow: str, roles: Sequence[str]) -> bool:
    """May someone with `roles` approve promotions of (and pull the kill switch on) it?"""
    wf = policy.workflows.get(workflow)
    return wf is not None and bool(set(roles) & set(wf.promotion.approver_roles))


def promotion_refusal(
    policy: Policy,
    workflow: str,
    actor: str,
    roles: Sequence[str],
    *,
    what: str = "approve promotions",
    approvals: Sequence[str] | None = None,
) -> Refusal | None:
    """Why `actor` may not `what` (approve promotions, pull the kill switch) of `workflow`,
    or None. An approval (`approvals`: those already given) also obeys the two-person
    rule: never the proposer (the rollout processor), and one person counts once."""
    wf = policy.workflows.get(workflow)
    if wf is None:
        return Refusal(UNKNOWN_WORKFLOW, f"policy {policy.version} has no workflow {workflow!r}")
    if not promotion_approver(policy, workflow, roles):
        return Refusal(
            NOT_PERMITTED,
            f"{actor} may not {what} of {workflow}; it needs one of the roles "
            f"{', '.join(wf.promotion.approver_roles)} (yours: {', '.join(roles) or 'none'})",
        )
    if approvals is None:
        return None
    if actor == ROLLOUT_PROPOSER:
        return Refusal(PROPOSER_CANNOT_APPROVE, "the rollout processor proposed it")
    if actor in approvals:
        return Refusal(
            ALREADY_APPROVED,
            f"{actor} approved already; the two-person rule needs another person",
        )
    return None
