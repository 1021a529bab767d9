"""Case traces, and the failed and denied actions someone should look at."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query

from console.api import reads
from console.api.deps import Conn, CurrentOperator, Svc
from console.api.models import Attention, CaseTrace, Denial, FailedExecution, TraceEvent
from console.api.permissions import AI_EVENTS, ai_output_hidden
from console.api.service_errors import NotFound
from infra.keys import Revealer
from projections.queries import trace

router = APIRouter(tags=["cases"])
HIDDEN = "AI output hidden: shadow phase or out of scope (shown once the case is resolved)"


def case_trace(conn: psycopg.Connection, case_id: str, revealer: Revealer) -> CaseTrace:
    """The case's timeline in order, with AI output withheld where the phase says so, and
    sealed personal data opened (`[erased]` once its key is destroyed)."""
    events = trace(conn, case_id)
    if not events:
        raise NotFound(f"no events for case {case_id!r}")
    events, case = revealer.reveal(conn, (events, reads.case_state(conn, case_id)))
    hidden = ai_output_hidden(case["phase"] if case else None, case["status"] if case else None)
    return CaseTrace(
        case_id=case_id,
        case=case,
        events=[_event(e, hidden) for e in events],
        ai_output_hidden=hidden,
    )


def _event(e: dict[str, Any], hidden: bool) -> TraceEvent:
    withheld = hidden and e["event_type"] in AI_EVENTS
    return TraceEvent(
        occurred_at=e["occurred_at"],
        event_type=e["event_type"],
        actor=e["actor"],
        summary=HIDDEN if withheld else e["summary"],
        where=f"{e['topic']}[{e['partition']}]@{e['kafka_offset']}",
        event_id=e["event_id"],
        detail=None if withheld else e["detail"],
        trace_id=e["trace_id"],
    )


def attention(conn: psycopg.Connection, limit: int) -> Attention:
    return Attention(
        failed_executions=[FailedExecution(**r) for r in reads.failed_executions(conn, limit)],
        denials=[Denial(**r) for r in reads.denials(conn, limit)],
    )


@router.get("/cases/{case_id}/trace", response_model=CaseTrace, summary="A case's whole story")
def case_trace_endpoint(
    case_id: str, _operator: CurrentOperator, svc: Svc, conn: Conn
) -> CaseTrace:
    """Every event of the case in order: opened, recommended, decided, reviewed, executed,
    resolved. Recommendations of shadow-phase and out-of-scope cases stay hidden until the
    case is resolved (operators resolve those unaided)."""
    return case_trace(conn, case_id, svc.revealer)


@router.get("/attention", response_model=Attention, summary="Failed and denied actions")
def attention_endpoint(
    _operator: CurrentOperator, conn: Conn, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Attention:
    """Executions that failed, timed out or were rolled back, guard denials and refused
    reviews, newest first."""
    return attention(conn, limit)
