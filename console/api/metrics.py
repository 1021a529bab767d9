"""Metrics by any segment, rollout readiness per workflow, and the policy in force."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Query

from console.api import reads
from console.api.deps import Conn, CurrentOperator, Services, Svc
from console.api.models import PolicyInfo, Readiness
from console.api.readiness import readiness
from console.api.service_errors import NotFound
from policy.semantics import policy_warnings
from projections.queries import metrics

router = APIRouter(tags=["metrics"])

# Mirrors projections.queries.DIMENSIONS (a unit test keeps them equal), as a Literal so
# that OpenAPI lists the choices and a wrong one is a 422 naming `query.by`.
Dimension = Literal["day", "workflow", "phase", "issue_class", "queue", "team", "channel"]


def readiness_all(svc: Services, conn: psycopg.Connection) -> list[Readiness]:
    in_force = svc.policies.get(conn)
    if in_force is None:
        return []
    rows = {(r["workflow"], r["phase"]): r for r in metrics(conn, ["workflow", "phase"])}
    aligned = {(r["workflow"], r["phase"]): r for r in reads.alignment_by_workflow_phase(conn)}
    return [
        readiness(wf, rows.get((name, wf.phase)), aligned.get((name, wf.phase)))
        for name, wf in in_force.loaded.policy.workflows.items()
    ]


def warnings_in_force(svc: Services, conn: psycopg.Connection) -> list[str]:
    """Settings of the policy in force that can never take effect here (policy.semantics)."""
    in_force = svc.policies.get(conn)
    if in_force is None:
        return []
    return [str(w) for w in policy_warnings(in_force.loaded.policy, svc.settings.partitions)]


@router.get("/metrics", summary="Rollout metrics by any segment")
def metrics_endpoint(
    _operator: CurrentOperator,
    conn: Conn,
    by: Annotated[list[Dimension], Query(description="dimensions to group by")] = ["workflow"],  # noqa: B006 - FastAPI copies defaults per request
) -> list[dict[str, Any]]:
    """The seven rollout metrics with the counts behind them, re-aggregated by `by`
    (repeat it: `?by=queue&by=channel`). Rates are ratios of summed counts; null when the
    denominator is zero."""
    return [_plain(row) for row in metrics(conn, list(dict.fromkeys(by)))]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    # sum() over bigint is numeric in PostgreSQL: counts go out as JSON numbers, not strings.
    return {
        k: (int(v) if v == v.to_integral_value() else float(v)) if isinstance(v, Decimal) else v
        for k, v in row.items()
    }


@router.get("/readiness", response_model=list[Readiness], summary="Rollout readiness")
def readiness_endpoint(_operator: CurrentOperator, svc: Svc, conn: Conn) -> list[Readiness]:
    """Each workflow of the policy in force: its metrics in its current phase against its
    promotion criteria (empty when no policy has been published)."""
    return readiness_all(svc, conn)


@router.get("/policy", response_model=PolicyInfo, summary="The policy in force")
def policy_endpoint(_operator: CurrentOperator, svc: Svc, conn: Conn) -> PolicyInfo:
    in_force = svc.policies.get(conn)
    if in_force is None:
        raise NotFound("no policy has been published yet (`casegate policy publish FILE`)")
    loaded = in_force.loaded
    return PolicyInfo(
        version=loaded.version,
        sha256=loaded.sha256,
        author=in_force.author,
        published_at=in_force.published_at,
        workflows={name: wf.phase for name, wf in loaded.policy.workflows.items()},
        warnings=warnings_in_force(svc, conn),
    )
