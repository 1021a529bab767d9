"""The console's FastAPI app: the JSON API under /api and the pages beside it.

`create_app` only wires what it is given (no connection is opened here); the composition
root (cli.serve, or a test) builds the pool, the producer and the codec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from confluent_kafka import Producer
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from psycopg_pool import ConnectionPool
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from console.api import cases, health, metrics, queue, reviews, rollout
from console.api.deps import Services
from console.api.policies import PolicyCache
from console.api.service_errors import ConsoleError, Invalid, Unauthorized, dotted
from console.api.telemetry import RequestMetrics
from console.web import forms, governance, pages
from console.web.render import STATIC, build_templates, render
from console.web.session import SignInRequired
from infra.keys import Revealer
from infra.secrets import install_event_id_key
from infra.settings import Settings
from schemas.codec import Codec

# Pages may load only our own CSS and JS; inline SVG is markup, not script, so it passes.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

# The docs page starts Swagger UI with one inline script FastAPI writes; everything it
# loads comes from this origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_ASSETS = "/api/docs/assets"


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
        docs_url=None,  # served below, from local assets
        redoc_url=None,
    )
    app.state.services = Services(
        settings, conn_pool, producer, codec, PolicyCache(), clock, Revealer.of(settings)
    )
    app.state.templates = build_templates()
    api = APIRouter(prefix="/api")
    for area in (health, queue, reviews, cases, metrics, rollout):
        api.include_router(area.router)
    app.include_router(api)
    app.include_router(pages.router)
    app.include_router(forms.router)
    app.include_router(governance.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
    # A plain route like FastAPI's own docs route: the page describes the API, it is not
    # part of it.
    app.add_route("/api/docs", _docs, include_in_schema=False)
    app.add_exception_handler(ConsoleError, _console_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.middleware("http")(_headers)
    app.middleware("http")(RequestMetrics(registry or CollectorRegistry()).middleware)
    return app


def _docs(_: Request) -> Response:
    """Swagger UI from the installed swagger-ui-bundle: the docs page loads nothing from
    another origin (a CDN serving a changed script would run in the console's origin)."""
    return get_swagger_ui_html(
        openapi_url="/api/openapi.json",
        title="casegate console API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    )


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
    if request.url.path == "/api/docs":
        response.headers.setdefault("Content-Security-Policy", DOCS_CSP)
    elif not _is_api(request):
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    if not _is_api(request) or request.url.path.startswith("/api/docs"):
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response
