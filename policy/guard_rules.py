"""The guard's rules: every RecommendationProduced gets exactly one GuardrailDecided.

Pure: the policy, the case's routing fields and the workflow's recent automatic runs
come in as arguments; the decision comes out as an event. Guardrails read structured
fields only, never the case's free text, so nothing written by a customer can widen
what is allowed. The full semantics, as tables: docs/decision-tables.md. The processor
that applies them to the topics is processors/guard.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from policy.approval import quorum
from policy.checks import PARAM_OUT_OF_BOUNDS, action_findings, check_action, is_denied
from policy.facts import CaseFacts
from policy.loader import LoadedPolicy
from policy.model import BlastRadius, Policy, Workflow
from schemas.envelope import caused_by
from schemas.events import ActionSpec, GuardrailDecided, RecommendationProduced, derived_event_id

__all__ = ["CaseFacts", "auto_run_limit", "check_action", "decide_guard", "runs_in_window"]

# Outcomes
SHADOWED = "shadowed"
APPROVAL_REQUIRED = "approval_required"
AUTO_AUTHORIZED = "auto_authorized"
DENIED = "denied"
OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True, slots=True)
class _Verdict:
    outcome: str
    reasons: tuple[str, ...]


def runs_in_window(
    recent_auto_runs: Sequence[datetime], blast_radius: BlastRadius | None, now: datetime
) -> tuple[datetime, ...]:
    """The automatic runs that count against the blast radius at `now`.

    The window is sliding and half-open: (now - window_s, now]. Agents can prune their
    stored run times with this same function.
    """
    if blast_radius is None:
        return ()
    start = now - timedelta(seconds=blast_radius.window_s)
    return tuple(t for t in recent_auto_runs if start < t <= now)


def auto_run_limit(blast_radius: BlastRadius | None, shards: int = 1) -> int:
    """Automatic runs one counter may authorize per window.

    The workflow's runs may be counted by `shards` independent counters (one per
    stream partition, none seeing the others); each gets floor(max_auto_runs / shards),
    so that together they never exceed the workflow's limit.
    """
    if blast_radius is None:
        return 0
    return blast_radius.max_auto_runs // max(1, shards)


def decide_guard(
    rec: RecommendationProduced,
    case: CaseFacts,
    policy: LoadedPolicy,
    recent_auto_runs: Sequence[datetime],
    now: datetime,
    shards: int = 1,
) -> GuardrailDecided:
    """Decide what may happen with one recommendation.

    Rules, in order: no matching workflow -> out_of_scope; no action -> shadowed; shadow
    phase -> shadowed (with what the envelope would have said); an action outside the
    envelope -> denied; otherwise approval_required, or auto_authorized in the bounded
    phase for an `auto` action inside its bounds and blast radius. `recent_auto_runs`
    are the times of this workflow's automatic authorizations counted by this caller,
    one of `shards` counters that share the limit (`auto_run_limit`).
    """
    if rec.case_id != case.case_id:
        raise ValueError(f"recommendation for {rec.case_id} guarded with facts of {case.case_id}")
    workflow = policy.policy.workflow_for(case.match_fields())
    if workflow is None:
        return _decided(rec, policy, now, None, _Verdict(OUT_OF_SCOPE, ("no_workflow",)))
    if rec.action is None:
        return _decided(rec, policy, now, workflow, _Verdict(SHADOWED, ("no_action",)))
    runs = len(runs_in_window(recent_auto_runs, workflow.blast_radius, now))
    limit = auto_run_limit(workflow.blast_radius, shards)
    if workflow.phase == "shadow":
        would = _would(rec.action, workflow, policy, runs, limit)
        verdict = _Verdict(SHADOWED, ("phase_shadow", *would))
    else:
        verdict = _envelope(rec.action, workflow, policy.policy, workflow.phase, runs, limit)
    return _decided(rec, policy, now, workflow, verdict)


def _envelope(
    action: ActionSpec,
    workflow: Workflow,
    policy: Policy,
    phase: str,
    auto_runs: int,
    limit: int,
) -> _Verdict:
    """The outcome for an action in `phase` (assisted or bounded) of `workflow`."""
    findings = action_findings(action, workflow, policy)
    rule = workflow.actions.get(action.name)
    if rule is None or is_denied(findings, rule.on_out_of_bounds):
        return _Verdict(DENIED, tuple(dict.fromkeys(f.code for f in findings)))
    reasons: list[str] = [PARAM_OUT_OF_BOUNDS] if findings else []
    if phase == "bounded" and rule.mode == "auto" and not findings:
        if auto_runs < limit:
            return _Verdict(AUTO_AUTHORIZED, ("within_envelope",))
        reasons.append("blast_radius_exceeded")
    reasons.append("needs_approval")
    if rule.mode == "suggest":
        reasons.append("suggest_only")
    return _Verdict(APPROVAL_REQUIRED, tuple(reasons))


def _would(
    action: ActionSpec, workflow: Workflow, policy: LoadedPolicy, auto_runs: int, limit: int
) -> tuple[str, ...]:
    """For shadow metrics: what the action would get were the workflow bounded."""
    verdict = _envelope(action, workflow, policy.policy, "bounded", auto_runs, limit)
    if verdict.outcome == DENIED:
        return tuple(f"would_deny:{code}" for code in verdict.reasons)
    if verdict.outcome == AUTO_AUTHORIZED:
        return ("would_auto_authorize",)
    return ("would_require_approval",)


def _decided(
    rec: RecommendationProduced,
    policy: LoadedPolicy,
    now: datetime,
    workflow: Workflow | None,
    verdict: _Verdict,
) -> GuardrailDecided:
    approvals = 0
    roles: tuple[str, ...] = ()
    expires_at: datetime | None = None
    if verdict.outcome == APPROVAL_REQUIRED and workflow is not None and rec.action:
        entry = policy.policy.action(rec.action.name)
        if entry is not None:  # always: an unknown action is denied, never sent for approval
            need = quorum(policy, entry)
            approvals, roles = need.people, need.roles
        expires_at = now + timedelta(seconds=workflow.approval_ttl_s)
    return GuardrailDecided(
        **caused_by(
            rec.event_id,
            "GuardrailDecided",
            case_id=rec.case_id,
            occurred_at=now,
            correlation_id=rec.correlation_id,
        ),
        decision_id=derived_event_id(rec.event_id, "decision"),
        recommendation_id=rec.recommendation_id,
        workflow=workflow.name if workflow else None,
        phase=workflow.phase if workflow else None,
        outcome=verdict.outcome,
        reasons=verdict.reasons,
        action=rec.action,
        policy_version=policy.version,
        approvals_required=approvals,
        eligible_roles=roles,
        expires_at=expires_at,
        case_bound=dict(rec.case_bound),
    )
