"""GET /api/health (no token needed) and GET /api/me."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from console.api import reads
from console.api.deps import CurrentOperator, Svc
from console.api.models import Health, Me

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(svc: Svc) -> JSONResponse:
    """PostgreSQL answers and the `reviews` topic is known to the broker; 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        with svc.pool.connection(timeout=3) as conn:
            reads.ping(conn)
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure is the answer here, not an error of the endpoint
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    topic = svc.settings.topic("reviews")
    try:
        # All topics, not just ours: asking for one by name may auto-create it.
        found = svc.producer.list_topics(timeout=3).topics.get(topic)
        checks["kafka"] = (
            "ok" if found is not None and found.error is None else (f"topic {topic} missing")
        )
    except Exception as exc:
        checks["kafka"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "degraded", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/me", response_model=Me, summary="Who the token belongs to")
def me(operator: CurrentOperator) -> Me:
    return Me(operator=operator.name, roles=list(operator.roles))
