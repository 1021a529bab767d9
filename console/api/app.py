"""The console's FastAPI app: the JSON API under /api and the pages beside it.

`create_app` only wires what it is given (no connection is opened here); the composition
root (console.serve, or a test) builds the pool, the producer and the codec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from confluent_kafka import Producer
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from psycopg_pool import ConnectionPool
from starlette.responses import Response

from console.api import cases, health, metrics, queue, reviews
from console.api.deps import Services
from console.api.errors import ConsoleError, Invalid, Unauthorized, dotted
from console.api.policies import PolicyCache
from console.api.telemetry import RequestMetrics
from console.web import forms, pages
from console.web.render import STATIC, build_templates, render
from console.web.session import SignInRequired
from infra.secrets import install_event_id_key
from infra.settings import Settings
from schemas.codec import Codec

# Pages may load only our own CSS and JS; inline SVG is markup, not script, so it passes.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def utc_clock() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    conn_pool: ConnectionPool,
    producer: Producer,
    codec: Codec,
    clock: Callable[[], datetime] = utc_clock,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    # Reviews carry derived ids: the deployment's key, as the processors have it.
    install_event_id_key(settings)
    app = FastAPI(
        title="casegate console",
        version="1",
        description=(
            "Operators review what the AI recommended; every write becomes an event on "
            "Kafka with the operator from the bearer token as its actor."
        ),
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.services = Services(settings, conn_pool, producer, codec, PolicyCache(), clock)
    app.state.templates = build_templates()
    api = APIRouter(prefix="/api")
    for area in (health, queue, reviews, cases, metrics):
        api.include_router(area.router)
    app.include_router(api)
    app.include_router(pages.router)
    app.include_router(forms.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(ConsoleError, _console_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.middleware("http")(_headers)
    app.middleware("http")(RequestMetrics(registry or CollectorRegistry()).middleware)
    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _console_error(request: Request, exc: ConsoleError) -> Response:
    if isinstance(exc, Invalid):
        return _invalid(request, [(loc, msg, "value_error") for loc, msg in exc.problems])
    if not _is_api(request):
        if isinstance(exc, SignInRequired):
            target = "/sign-in?ended=true" if exc.message else "/sign-in"
            return RedirectResponse(target, status_code=303)
        return render(request, "error.html", status=exc.status, session=None, message=exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return _invalid(request, [(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()])


def _invalid(request: Request, problems: list[tuple[tuple[str | int, ...], str, str]]) -> Response:
    """422 naming every field at fault: `detail` as FastAPI shapes it, plus one sentence."""
    message = "invalid request: " + "; ".join(f"{dotted(loc)}: {msg}" for loc, msg, _ in problems)
    if not _is_api(request):
        return render(request, "error.html", status=422, session=None, message=message)
    detail = [{"loc": list(loc), "msg": msg, "type": kind} for loc, msg, kind in problems]
    return JSONResponse({"detail": detail, "message": message}, status_code=422)


async def _headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if not request.url.path.startswith("/static/"):
        # Pages and answers carry case data: never keep them in a shared or browser cache.
        response.headers.setdefault("Cache-Control", "no-store")
    if not _is_api(request):  # the API's own docs page loads Swagger UI from its CDN
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response
