"""The pages operators and analysts read: queue, review, trace, attention, metrics, rollout."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from console.api import reads
from console.api.cases import attention, case_trace
from console.api.deps import Conn, Services, Svc
from console.api.metrics import readiness_all, warnings_in_force
from console.api.queue import item_for, policy_in_force, to_item
from console.api.rollout import rollout_status
from console.api.service_errors import ConsoleError
from console.web.charts import bar_chart, time_series
from console.web.render import count, minutes, pct, render, trace_url
from console.web.session import Session, WebSession
from policy.approval import promotion_approver
from projections.queries import DIMENSIONS, metrics, segment_label

router = APIRouter(include_in_schema=False)

# What the metrics page can chart: label and how to show a value.
METRICS = {
    "acceptance_rate": ("acceptance rate", pct),
    "override_rate": ("manual override rate", pct),
    "denial_rate": ("policy denial rate", pct),
    "error_rate": ("error rate", pct),
    "rollback_rate": ("rollback rate", pct),
    "reopen_rate": ("re-open rate", pct),
    "mean_first_action_seconds": ("time to first meaningful action", minutes),
    "mean_resolution_seconds": ("time to resolution", minutes),
    "recommendations": ("recommendations", count),
    "cases_opened": ("cases opened", count),
}
SEGMENTS = tuple(d for d in DIMENSIONS if d != "day")


def new_key() -> str:
    """A fresh idempotency key per rendered form: submitting it twice records one review."""
    return f"web-{uuid.uuid4()}"


@router.get("/")
def home() -> Response:
    return RedirectResponse("/queue", status_code=303)


@router.get("/queue")
def queue_page(request: Request, session: Session, svc: Svc, conn: Conn) -> Response:
    rows = svc.revealer.reveal(conn, reads.queue_for(conn, session.operator, svc.clock()))
    policy = policy_in_force(svc, conn)
    items = [to_item(r, session.operator, policy) for r in rows]
    return render(request, "queue.html", session=session, items=items)


def review_page(
    request: Request,
    session: WebSession,
    svc: Services,
    conn: psycopg.Connection,
    recommendation_id: str,
    error: ConsoleError | None = None,
) -> Response:
    """The review page, optionally with the error of a refused form above the forms."""
    item = item_for(svc, conn, session.operator, recommendation_id)
    opened = svc.revealer.reveal(conn, reads.case_opened_event(conn, item.case_id))
    in_force = svc.policies.get(conn)
    choices = []
    if in_force is not None:
        for name in item.you_may.override:
            action = in_force.loaded.policy.action(name)
            if action is not None:
                choices.append(action)
    return render(
        request,
        "review.html",
        status=error.status if error else 200,
        session=session,
        item=item,
        description=(opened or {}).get("detail", {}).get("description"),
        choices=choices,
        keys={k: new_key() for k in ("approve", "reject", "override", "reclassify")},
        error=error,
    )


@router.get("/queue/{recommendation_id}")
def review(
    recommendation_id: str, request: Request, session: Session, svc: Svc, conn: Conn
) -> Response:
    return review_page(request, session, svc, conn, recommendation_id)


@router.get("/cases")
def find_case(case_id: str = "") -> Response:
    return RedirectResponse(trace_url(case_id.strip()) if case_id.strip() else "/queue", 303)


def trace_page(
    request: Request,
    session: WebSession,
    conn: psycopg.Connection,
    case_id: str,
    submitted: str = "",
    error: ConsoleError | None = None,
) -> Response:
    story = case_trace(conn, case_id, request.app.state.services.revealer)
    try:  # only ever echo back something shaped like our own review ids
        shown = str(uuid.UUID(submitted)) if submitted else None
    except ValueError:
        shown = None
    recorded = shown is not None and any(
        (e.detail or {}).get("review_id") == shown for e in story.events
    )
    # One case is one trace when upstream starts it; a case whose events came in several
    # (no traceparent upstream, say) lists each, in the order the case met them.
    trace_ids = list(dict.fromkeys(e.trace_id for e in story.events if e.trace_id))
    link = request.app.state.services.settings.trace_link
    return render(
        request,
        "trace.html",
        status=error.status if error else 200,
        session=session,
        story=story,
        submitted=shown,
        recorded=recorded,
        traces=[(t, link.replace("{trace_id}", t) if link else None) for t in trace_ids],
        key=new_key(),
        error=error,
    )


@router.get("/cases/{case_id}")
def trace(
    case_id: str, request: Request, session: Session, conn: Conn, submitted: str = ""
) -> Response:
    return trace_page(request, session, conn, case_id, submitted)


@router.get("/attention")
def attention_page(request: Request, session: Session, conn: Conn) -> Response:
    return render(request, "attention.html", session=session, found=attention(conn, 200))


@router.get("/metrics")
def metrics_page(
    request: Request,
    session: Session,
    svc: Svc,
    conn: Conn,
    by: str = "workflow",
    metric: str = "acceptance_rate",
) -> Response:
    notes = []
    if by not in SEGMENTS:
        notes.append(f"unknown segment {by!r}; showing workflow")
        by = "workflow"
    if metric not in METRICS:
        notes.append(f"unknown metric {metric!r}; showing acceptance rate")
        metric = "acceptance_rate"
    label, fmt = METRICS[metric]
    daily = metrics(conn, ["day"])
    segments = metrics(conn, [by])

    def value(row: dict[str, Any]) -> float | None:
        v = row[metric]
        return None if v is None else float(v)

    return render(
        request,
        "metrics.html",
        session=session,
        by=by,
        metric=metric,
        label=label,
        segments_choice=SEGMENTS,
        metrics_choice={k: v[0] for k, v in METRICS.items()},
        day_chart=time_series([(str(r["day"]), value(r)) for r in daily], fmt),
        segment_chart=bar_chart([(segment_label(by, r[by]), value(r)) for r in segments], fmt),
        segment=segment_label,
        policy_warnings=warnings_in_force(svc, conn),
        rows=segments,
        readiness=readiness_all(svc, conn),
        notes=notes,
    )


@router.get("/rollout")
def rollout_get(
    request: Request, session: Session, svc: Svc, conn: Conn, sent: str = ""
) -> Response:
    return rollout_page(request, session, svc, conn, sent=sent)


def rollout_page(
    request: Request,
    session: WebSession,
    svc: Services,
    conn: psycopg.Connection,
    sent: str = "",
    error: ConsoleError | None = None,
) -> Response:
    """Each workflow's phase, readiness, proposals with their evidence and approve buttons,
    the kill switch, and why each phase change happened."""
    report = rollout_status(svc, conn)
    in_force = svc.policies.get(conn)

    def may_approve(workflow: str) -> bool:
        return in_force is not None and promotion_approver(
            in_force.loaded.policy, workflow, session.operator.roles
        )

    return render(
        request,
        "rollout.html",
        status=error.status if error else 200,
        session=session,
        report=report,
        may_approve=may_approve,
        new_key=new_key,
        sent=sent,
        error=error,
    )
