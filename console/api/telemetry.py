"""The console's request metrics: count and duration by method, route and status.

The route is the path template (`/api/queue/{recommendation_id}`), never the path itself,
so one series per endpoint however many items there are.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.responses import Response

from processors.metrics import SECONDS_BUCKETS

Next = Callable[[Request], Awaitable[Response]]


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "casegate_http_requests",
            "Console requests, by method, route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "casegate_http_request_seconds",
            "Console request time, by route.",
            ["route"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    async def middleware(self, request: Request, call_next: Next) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or (
            "/static" if request.url.path.startswith("/static/") else "unmatched"
        )
        self.requests.labels(request.method, template, str(response.status_code)).inc()
        self.seconds.labels(template).observe(time.perf_counter() - started)
        return response
