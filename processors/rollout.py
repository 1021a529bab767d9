"""The rollout processor: evidence-gated promotions, automatic demotions, the kill switch.

Every `CASEGATE_ROLLOUT_INTERVAL_S` (Handler.every) it reads each workflow's evidence from
the read models and decides with `policy.rollout_rules.evaluate`:
- a demotion trigger fired: the next policy version, with the workflow one phase lower, and
  `WorkflowDemoted` with the evidence, in one transaction, no human needed;
- the workflow qualifies: `PromotionProposed` with the evidence, once per (workflow, policy
  version).
It reads `phase-requests` (supervisors' approvals and kill switches, from the console and
the CLI): an approval counts when it comes from a role the workflow names, from a person
who has not approved it yet, for the proposal as it was computed under the policy in force
(a proposal of an older version is stale, and refused); the second one publishes the next
policy version with the new phase and `WorkflowPromoted`. A kill switch demotes to shadow
at once. Refusals are `RolloutRequestRefused` with the reason.

Policies go out through the admission rule of every reader (`PolicyHistory.admit`): a new
version, keyed by it, its document checked to differ only in the one phase. Only one phase
change leaves per policy version (a `changed|<version>` entry): until this worker reads
the version it published, nothing else changes, so no change is lost on an older document.

State (store `rollout`, partition 0 of the one-partition input): `proposal|<id>` -> the
proposal and its approvals; `proposed|<workflow>|<version>`; `changed|<version>`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import psycopg

from infra.db import database_urls
from infra.settings import Settings
from policy.approval import ROLLOUT_PROPOSER, promotion_refusal
from policy.loader import LoadedPolicy, PolicyHistory
from policy.model import Workflow
from policy.rollout_rules import Check, Evidence, Recent, Verdict, evaluate, next_version
from policy.rollout_rules import rephased as rephase
from processors.handler import Handler, Inbound, Step
from processors.records import record_time
from processors.rollout_evidence import gather
from schemas.codec import Codec
from schemas.envelope import Envelope, caused_by, envelope
from schemas.events import (
    Event,
    EvidenceCheck,
    KillSwitchPulled,
    PolicyPublished,
    PromotionApprovalRecorded,
    PromotionApprovalSubmitted,
    PromotionProposed,
    RolloutRequestRefused,
    WorkflowDemoted,
    WorkflowPromoted,
    derived_event_id,
    workflow_case_id,
)

log = logging.getLogger(__name__)
STORE = "rollout"
SYSTEM = ROLLOUT_PROPOSER  # the proposer: never one of the approvers
Source = Callable[[Sequence[LoadedPolicy], datetime], dict[str, tuple[Evidence, Recent]]]


def _ms(at: datetime) -> datetime:
    return record_time(at.timestamp())


def _answering(
    req: PromotionApprovalSubmitted | KillSwitchPulled, kind: str, at: datetime
) -> Envelope:
    """The fields every event answering request `req` carries (its id derives from it)."""
    return caused_by(
        req.event_id,
        kind,
        case_id=req.case_id,
        occurred_at=at,
        correlation_id=req.proposal_id if isinstance(req, PromotionApprovalSubmitted) else None,
    )


def evidence_checks(checks: Sequence[Check]) -> tuple[EvidenceCheck, ...]:
    return tuple(EvidenceCheck(**asdict(c)) for c in checks)


class Rollout(Handler):
    component = "rollout"
    inputs = {"phase-requests": (PromotionApprovalSubmitted, KillSwitchPulled)}
    stores = (STORE,)
    needs_policy = True

    def __init__(self, source: Source, every_s: float) -> None:
        self._source = source
        self.every_s = every_s

    # -- periodic evaluation ------------------------------------------------------------

    def every(self, step: Step) -> None:
        policy = step.policy
        if policy is None or self._pending(step, policy):
            return
        history = list(step.policies.values())
        try:
            gathered = self._source(history, step.now)
        except psycopg.Error as exc:
            # Nothing is decided on evidence not read; the next interval reads it again.
            log.warning("rollout: evidence not read (%s); trying again next interval", exc)
            return
        for name, wf in policy.policy.workflows.items():
            evidence, recent = gathered.get(name, (Evidence(), Recent()))
            proposed = step.state.get(STORE, 0, f"proposed|{name}|{policy.version}") is not None
            verdict = evaluate(wf, evidence, recent, proposed)
            if verdict.action == "demote" and verdict.to_phase is not None:
                fired = next(c.name for c in verdict.checks if c.passed is False)
                cause = f"{name}|{policy.version}|demote"
                self._change(step, policy, wf, verdict.to_phase, cause, None)
                self._demoted(step, policy, wf, verdict, fired, cause)
                return  # one change per version: the others are judged under the next one
            if verdict.action == "propose":
                self._propose(step, policy, wf, verdict)

    def _propose(self, step: Step, policy: LoadedPolicy, wf: Workflow, verdict: Verdict) -> None:
        ready = verdict.readiness
        if ready is None or verdict.to_phase is None:
            return
        proposal_id = derived_event_id(f"{wf.name}|{policy.version}", "PromotionProposed")
        now = _ms(step.now)
        event = PromotionProposed(
            event_id=proposal_id,
            case_id=workflow_case_id(wf.name),
            occurred_at=now,
            proposal_id=proposal_id,
            workflow=wf.name,
            from_phase=wf.phase,
            to_phase=verdict.to_phase,
            policy_version=policy.version,
            policy_sha256=policy.sha256,
            sample=ready.sample,
            min_sample=ready.min_sample,
            window_s=wf.promotion.window_s,
            window_start=now - timedelta(seconds=wf.promotion.window_s),
            window_end=now,
            checks=evidence_checks(ready.checks),
            approvals_required=wf.promotion.approvals,
            approver_roles=wf.promotion.approver_roles,
            proposed_by=SYSTEM,
        )
        step.out.emit([event])
        step.state.put(STORE, 0, f"proposed|{wf.name}|{policy.version}", proposal_id)
        step.state.put(
            STORE,
            0,
            f"proposal|{proposal_id}",
            {
                "workflow": wf.name,
                "from_phase": wf.phase,
                "to_phase": verdict.to_phase,
                "policy_version": policy.version,
                "approvals_required": wf.promotion.approvals,
                "approvals": [],
                "status": "open",
            },
        )
        log.info("rollout: %s proposed for %s under %s", wf.name, verdict.to_phase, policy.version)

    def _demoted(
        self,
        step: Step,
        policy: LoadedPolicy,
        wf: Workflow,
        verdict: Verdict,
        trigger: str,
        cause: str,
    ) -> None:
        new = step.state.get(STORE, 0, f"changed|{policy.version}")
        step.out.emit(
            [
                WorkflowDemoted(
                    # `cause` is a key (a demotion trigger's, or the request's), not
                    # always an event: no causation is recorded.
                    **envelope(
                        cause,
                        "WorkflowDemoted",
                        case_id=workflow_case_id(wf.name),
                        occurred_at=_ms(step.now),
                        causation_id=None,
                        correlation_id=None,
                    ),
                    workflow=wf.name,
                    from_phase=wf.phase,
                    to_phase=verdict.to_phase or "shadow",
                    from_version=policy.version,
                    policy_version=str(new),
                    trigger=trigger,
                    actor=SYSTEM,
                    reason=verdict.why,
                    checks=evidence_checks(verdict.checks),
                )
            ]
        )
        log.warning("rollout: %s demoted to %s: %s", wf.name, verdict.to_phase, verdict.why)

    # -- requests -----------------------------------------------------------------------

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        policy = step.policy
        if policy is None:  # unreachable: the loop waits for a policy
            raise RuntimeError("rollout stepped without a policy")
        for record in batch:
            event = record.event
            # At the request's own time: a batch decided again yields the same events.
            at = record_time(record.timestamp)
            if isinstance(event, PromotionApprovalSubmitted):
                self._approve(step, policy, event, at)
            elif isinstance(event, KillSwitchPulled):
                self._kill(step, policy, event, at)

    def _approve(
        self, step: Step, policy: LoadedPolicy, req: PromotionApprovalSubmitted, at: datetime
    ) -> None:
        key = f"proposal|{req.proposal_id}"
        proposal: dict[str, Any] | None = step.state.get(STORE, 0, key)
        why = _approval_refusal(step, policy, req, proposal)
        if why is not None or proposal is None:
            self._refuse(step, req, "approval", why or "unknown_proposal", at)
            return
        approvals = [*proposal["approvals"], req.actor]
        required = int(proposal["approvals_required"])
        wf = policy.policy.workflows[proposal["workflow"]]
        events: list[Event] = [
            PromotionApprovalRecorded(
                **_answering(req, "PromotionApprovalRecorded", at),
                proposal_id=req.proposal_id,
                workflow=wf.name,
                actor=req.actor,
                roles=req.roles,
                approvals_received=len(approvals),
                approvals_required=required,
            )
        ]
        status = "open"
        if len(approvals) >= required:
            new = self._change(step, policy, wf, proposal["to_phase"], req.event_id, approvals)
            events.append(
                WorkflowPromoted(
                    **_answering(req, "WorkflowPromoted", at),
                    proposal_id=req.proposal_id,
                    workflow=wf.name,
                    from_phase=wf.phase,
                    to_phase=proposal["to_phase"],
                    from_version=policy.version,
                    policy_version=new,
                    approvers=tuple(approvals),
                )
            )
            status = "promoted"
            log.info("rollout: %s promoted to %s (%s)", wf.name, proposal["to_phase"], new)
        step.out.emit(events)
        step.state.put(STORE, 0, key, {**proposal, "approvals": approvals, "status": status})

    def _kill(self, step: Step, policy: LoadedPolicy, req: KillSwitchPulled, at: datetime) -> None:
        wf = policy.policy.workflows.get(req.workflow)
        refusal = promotion_refusal(
            policy.policy, req.workflow, req.actor, req.roles, what="pull the kill switch"
        )
        why = None
        if refusal is not None:
            why = f"{refusal.reason}: {refusal.detail}"
        elif wf is None:  # unreachable: the refusal names an unknown workflow
            why = "unknown_workflow"
        elif not req.reason.strip():
            why = "reason_required: say why the workflow is killed"
        elif wf.phase == "shadow":
            why = f"already_shadow: {wf.name} is in shadow under policy {policy.version}"
        elif self._pending(step, policy):
            why = "policy_change_pending: another phase change is being published; pull again"
        if why is not None or wf is None:
            self._refuse(step, req, "kill", why or "unknown_workflow", at)
            return
        new = self._change(step, policy, wf, "shadow", req.event_id, None, killed_by=req.actor)
        step.out.emit(
            [
                WorkflowDemoted(
                    **_answering(req, "WorkflowDemoted", at),
                    workflow=wf.name,
                    from_phase=wf.phase,
                    to_phase="shadow",
                    from_version=policy.version,
                    policy_version=new,
                    trigger="kill_switch",
                    actor=req.actor,
                    reason=req.reason,
                    checks=(),
                )
            ]
        )
        log.warning("rollout: kill switch on %s by %s: %s", wf.name, req.actor, req.reason)

    def _refuse(
        self,
        step: Step,
        req: PromotionApprovalSubmitted | KillSwitchPulled,
        kind: str,
        reason: str,
        at: datetime,
    ) -> None:
        step.out.emit(
            [
                RolloutRequestRefused(
                    **_answering(req, "RolloutRequestRefused", at),
                    request=kind,
                    workflow=req.workflow,
                    proposal_id=getattr(req, "proposal_id", None),
                    actor=req.actor,
                    reason=reason,
                )
            ]
        )
        log.info("rollout: %s by %s refused: %s", kind, req.actor, reason)

    # -- publishing the next version ----------------------------------------------------

    @staticmethod
    def _pending(step: Step, policy: LoadedPolicy) -> bool:
        """A change from the version in force went out, and is not read back yet."""
        return step.state.get(STORE, 0, f"changed|{policy.version}") is not None

    def _change(
        self,
        step: Step,
        policy: LoadedPolicy,
        wf: Workflow,
        phase: str,
        cause: str,
        approvers: list[str] | None,
        killed_by: str | None = None,
    ) -> str:
        """Publish the next version with `wf` in `phase`; returns that version."""
        version = next_version(policy.version, set(step.policies))
        if approvers is not None:
            author = f"rollout (approved by {', '.join(approvers)})"
        elif killed_by is not None:
            author = f"rollout (kill switch by {killed_by})"
        else:
            author = "rollout (demotion trigger)"
        note = (
            f"Published by the rollout processor: workflow {wf.name} {wf.phase} -> {phase}.\n"
            f"{author}; previous version {policy.version}."
        )
        loaded = rephase(policy, wf.name, phase, version, note)
        # The admission rule every reader applies, checked before anything is sent.
        history = PolicyHistory()
        for known in step.policies.values():
            history.offer(known.version, known.sha256)
        refused = history.refusal(loaded.version, loaded.sha256)
        if refused is not None:  # unreachable: next_version picks an unseen version
            raise RuntimeError(refused)
        step.out.emit(
            [
                PolicyPublished(
                    **envelope(
                        cause,
                        "PolicyPublished",
                        case_id="policy",
                        occurred_at=_ms(step.now),
                        causation_id=None,
                        correlation_id=None,
                    ),
                    version=loaded.version,
                    sha256=loaded.sha256,
                    author=author,
                    document=loaded.text,
                )
            ]
        )
        step.state.put(STORE, 0, f"changed|{policy.version}", version)
        return version


def _approval_refusal(
    step: Step,
    policy: LoadedPolicy,
    req: PromotionApprovalSubmitted,
    proposal: dict[str, Any] | None,
) -> str | None:
    """Why an approval does not count, or None (the two-person rule, bound to the version)."""
    if proposal is None:
        return f"unknown_proposal: no proposal {req.proposal_id}"
    if proposal["status"] != "open":
        return f"proposal_closed: proposal {req.proposal_id} is {proposal['status']}"
    computed = proposal["policy_version"]
    if computed != policy.version or Rollout._pending(step, policy):
        return (
            f"stale_proposal: computed under policy {computed}, but {policy.version} is in force "
            "(or a newer one is on its way); approve the proposal made under the policy in force"
        )
    if req.policy_version != computed:
        return (
            f"stale_proposal: you saw it under policy {req.policy_version}; it was computed "
            f"under {computed}"
        )
    refusal = promotion_refusal(
        policy.policy, proposal["workflow"], req.actor, req.roles, approvals=proposal["approvals"]
    )
    return None if refusal is None else f"{refusal.reason}: {refusal.detail}"


def build(settings: Settings, codec: Codec) -> Rollout:
    url = database_urls(settings).app
    holder: dict[str, psycopg.Connection] = {}

    def source(
        history: Sequence[LoadedPolicy], now: datetime
    ) -> dict[str, tuple[Evidence, Recent]]:
        # One autocommit connection, opened again after a failure (PostgreSQL restarted).
        conn = holder.get("conn")
        if conn is None or conn.closed or conn.broken:
            conn = holder["conn"] = psycopg.connect(url, autocommit=True, connect_timeout=10)
        try:
            return gather(conn, history, now)
        except psycopg.Error:
            conn.close()
            raise

    return Rollout(source, settings.rollout_interval_s)
