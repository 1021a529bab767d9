"""The rollout, for supervisors: each workflow's phase, readiness, proposals and the story
of its phase changes; approving a proposal and pulling a workflow's kill switch.

The console (and `casegate rollout`, which calls the same functions) refuses early what
the rollout processor would refuse — a role that may not approve (403), an unknown
proposal (404), a promoted or stale proposal, or a second approval by the same person
(409) — and the processor re-checks everything and answers with RolloutRequestRefused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, status
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from console.api.deps import Conn, CurrentOperator, Svc
from console.api.metrics import readiness_all
from console.api.models import Readiness
from console.api.service_errors import Conflict, Forbidden, Invalid, NotFound
from console.api.writes import produce_durably
from console.auth import Operator
from policy.approval import ALREADY_APPROVED, UNKNOWN_WORKFLOW, promotion_refusal
from policy.loader import LoadedPolicy
from schemas.events import (
    KillSwitchPulled,
    PromotionApprovalSubmitted,
    derived_event_id,
    new_event_id,
    utc_now,
    workflow_case_id,
)

router = APIRouter(tags=["rollout"])
REFUSAL_ERRORS = {UNKNOWN_WORKFLOW: NotFound, ALREADY_APPROVED: Conflict}


class Proposal(BaseModel):
    proposal_id: str
    workflow: str
    from_phase: str
    to_phase: str
    policy_version: str
    proposed_at: datetime
    approvals_required: int
    approvers: list[str]
    sample: int
    checks: list[dict[str, Any]]
    status: str = Field(description="open, stale (computed under an older policy) or promoted")
    promoted_to: str | None


class Change(BaseModel):
    workflow: str
    occurred_at: datetime
    event_type: str
    actor: str | None
    summary: str
    reason: str | None
    policy_version: str | None
    checks: list[dict[str, Any]] = Field(default_factory=list)


class WorkflowRollout(BaseModel):
    workflow: str
    phase: str
    readiness: Readiness | None
    proposals: list[Proposal]
    history: list[Change] = Field(description="newest first: proposals, approvals, refusals")


class RolloutStatus(BaseModel):
    policy_version: str | None
    workflows: list[WorkflowRollout]


class KillRequest(BaseModel):
    model_config = {"extra": "forbid"}
    reason: str = Field(min_length=3, max_length=2000, description="why, for the audit")
    idempotency_key: str | None = Field(
        default=None,
        min_length=8,
        max_length=200,
        description="the same key again sends the same event (dropped as a duplicate)",
    )


class Requested(BaseModel):
    event_id: str
    event_type: str
    workflow: str
    actor: str


def proposals(conn: psycopg.Connection, in_force: str | None) -> list[Proposal]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM rollout_proposals ORDER BY proposed_at DESC, proposal_id"
        ).fetchall()
    out = []
    for r in rows:
        stale = r["status"] == "open" and r["policy_version"] != in_force
        out.append(
            Proposal(
                **{k: r[k] for k in Proposal.model_fields if k not in ("status", "checks")},
                checks=r["checks"] or [],
                status="stale" if stale else r["status"],
            )
        )
    return out


def history(conn: psycopg.Connection, limit: int = 200) -> list[Change]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT workflow, occurred_at, event_type, actor, summary, reason, policy_version, "
            "coalesce(detail->'checks', '[]'::jsonb) AS checks FROM rollout_events "
            "ORDER BY occurred_at DESC, kafka_offset DESC LIMIT %s",
            (limit,),
        ).fetchall()
    return [Change(**r) for r in rows]


def rollout_status(svc: Svc, conn: psycopg.Connection) -> RolloutStatus:
    in_force = svc.policies.get(conn)
    if in_force is None:
        return RolloutStatus(policy_version=None, workflows=[])
    version = in_force.loaded.version
    ready = {r.workflow: r for r in readiness_all(svc, conn)}
    props, story = proposals(conn, version), history(conn)
    return RolloutStatus(
        policy_version=version,
        workflows=[
            WorkflowRollout(
                workflow=name,
                phase=wf.phase,
                readiness=ready.get(name),
                proposals=[p for p in props if p.workflow == name],
                history=[c for c in story if c.workflow == name],
            )
            for name, wf in in_force.loaded.policy.workflows.items()
        ],
    )


def _in_force(svc: Svc, conn: psycopg.Connection) -> LoadedPolicy:
    in_force = svc.policies.get(conn)
    if in_force is None:
        raise NotFound("no policy has been published yet (`casegate policy publish FILE`)")
    return in_force.loaded


def _may_any(policy: LoadedPolicy, operator: Operator) -> None:
    """403 at once for someone who may approve no workflow's promotions at all."""
    roles = {r for wf in policy.policy.workflows.values() for r in wf.promotion.approver_roles}
    if not roles & set(operator.roles):
        raise Forbidden(
            f"{operator.name} may not approve promotions or pull kill switches: that needs "
            f"one of the roles {', '.join(sorted(roles))} (yours: {', '.join(operator.roles)})"
        )


def _may(
    policy: LoadedPolicy,
    operator: Operator,
    workflow: str,
    what: str,
    approvals: Sequence[str] | None = None,
) -> None:
    """The rollout processor's own rule (policy.approval.promotion_refusal), as HTTP."""
    _may_any(policy, operator)
    refusal = promotion_refusal(
        policy.policy,
        workflow,
        operator.name,
        operator.roles,
        what=what,
        approvals=approvals,
    )
    if refusal is not None:
        raise REFUSAL_ERRORS.get(refusal.reason, Forbidden)(refusal.detail)


def approve_proposal(
    svc: Svc, conn: psycopg.Connection, operator: Operator, proposal_id: str, via: str
) -> Requested:
    """Check and send one PromotionApprovalSubmitted bound to the proposal's version."""
    policy = _in_force(svc, conn)
    _may_any(policy, operator)
    found = [p for p in proposals(conn, policy.version) if p.proposal_id == proposal_id]
    if not found:
        raise NotFound(f"no proposal {proposal_id} (`casegate rollout status` lists them)")
    proposal = found[0]
    _may(policy, operator, proposal.workflow, "approve promotions")
    if proposal.status == "promoted":
        raise Conflict(f"proposal {proposal_id} was promoted already ({proposal.promoted_to})")
    if proposal.status == "stale":
        raise Conflict(
            f"stale proposal: computed under policy {proposal.policy_version}, but "
            f"{policy.version} is in force; approve the proposal made under it"
        )
    # After the status checks, as the processor orders them: a stale proposal says so first.
    _may(policy, operator, proposal.workflow, "approve promotions", proposal.approvers)
    event = PromotionApprovalSubmitted(
        event_id=new_event_id(),
        case_id=workflow_case_id(proposal.workflow),
        occurred_at=utc_now(),
        correlation_id=proposal_id,
        proposal_id=proposal_id,
        workflow=proposal.workflow,
        policy_version=proposal.policy_version,
        actor=operator.name,
        roles=operator.roles,
        via=via,
    )
    produce_durably(svc, event)
    return Requested(
        event_id=event.event_id,
        event_type=event.event_type,
        workflow=event.workflow,
        actor=operator.name,
    )


def pull_kill_switch(
    svc: Svc,
    conn: psycopg.Connection,
    operator: Operator,
    workflow: str,
    reason: str,
    via: str,
    idempotency_key: str | None = None,
) -> Requested:
    """Check and send one KillSwitchPulled: the workflow goes to shadow at once. A retry
    with the same key carries the same event id, which every consumer drops."""
    policy = _in_force(svc, conn)
    _may(policy, operator, workflow, "pull the kill switch")
    if len(reason.strip()) < 3:
        raise Invalid([(("reason",), "say why the workflow is killed (at least 3 characters)")])
    if policy.policy.workflows[workflow].phase == "shadow":
        raise Conflict(f"{workflow} is in shadow already under policy {policy.version}")
    event = KillSwitchPulled(
        event_id=(
            derived_event_id(f"{operator.name}|{idempotency_key}", "KillSwitchPulled")
            if idempotency_key
            else new_event_id()
        ),
        case_id=workflow_case_id(workflow),
        occurred_at=utc_now(),
        workflow=workflow,
        actor=operator.name,
        roles=operator.roles,
        reason=reason,
        via=via,
    )
    produce_durably(svc, event)
    return Requested(
        event_id=event.event_id, event_type=event.event_type, workflow=workflow, actor=operator.name
    )


_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid or revoked token"},
    403: {"description": "none of your roles may approve promotions of this workflow"},
    404: {"description": "no such proposal or workflow"},
    409: {"description": "promoted or stale proposal, or you approved it already"},
    503: {"description": "Kafka did not acknowledge; retry"},
}


@router.get("/rollout", response_model=RolloutStatus, summary="Rollout of every workflow")
def status_endpoint(_operator: CurrentOperator, svc: Svc, conn: Conn) -> RolloutStatus:
    """Each workflow's phase, readiness, promotion proposals (with their evidence and
    approvals) and the story of its phase changes: why each demotion happened."""
    return rollout_status(svc, conn)


@router.post(
    "/rollout/proposals/{proposal_id}/approve",
    response_model=Requested,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Approve a promotion proposal",
    responses=_WRITE_RESPONSES,
)
def approve_endpoint(
    proposal_id: str, operator: CurrentOperator, svc: Svc, conn: Conn
) -> Requested:
    """One PromotionApprovalSubmitted with your operator id and roles from the token. Two
    distinct supervisors (the workflow's `promotion.approver_roles`) promote it; the rollout
    processor then publishes the next policy version."""
    return approve_proposal(svc, conn, operator, proposal_id, "console")


@router.post(
    "/rollout/workflows/{workflow}/kill",
    response_model=Requested,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Pull a workflow's kill switch (demote to shadow at once)",
    responses=_WRITE_RESPONSES,
)
def kill_endpoint(
    workflow: str,
    body: Annotated[KillRequest, Body()],
    operator: CurrentOperator,
    svc: Svc,
    conn: Conn,
) -> Requested:
    """One KillSwitchPulled with your operator id, roles and reason."""
    return pull_kill_switch(
        svc, conn, operator, workflow, body.reason, "console", body.idempotency_key
    )
