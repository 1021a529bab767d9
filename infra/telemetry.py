"""Operability for every process: logs (text or JSON lines), a Prometheus endpoint, and
OpenTelemetry traces carried through Kafka in the W3C `traceparent` header.

Each process serves `/metrics` on its own port: `CASEGATE_METRICS_PORT` (the base, 0 turns
metrics off) plus the component's offset plus ten per instance, on `CASEGATE_METRICS_HOST`
(127.0.0.1 by default). A port that is taken is reported and left: metrics never stop a
process. Tracing is off unless `CASEGATE_TRACING` is `console` (spans as JSON lines on the
process's stdout) or `otlp` (to `CASEGATE_OTLP_ENDPOINT`, with the `casegate[otlp]`
extra). When it is off, the upstream's `traceparent` is still carried along unchanged, so
a trace started upstream stays one trace.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

from infra.settings import Settings

log = logging.getLogger(__name__)
TRACEPARENT = "traceparent"
# Each component's place after the base port; instance N adds 10 * N.
METRICS_OFFSETS: dict[str, int] = {
    "intake": 1,
    "recommend": 2,
    "guard": 3,
    "approve": 4,
    "execute": 5,
    "readmodels": 6,
    "console": 7,
    "rollout": 8,
}
_PROPAGATOR = TraceContextTextMapPropagator()
# Fields a log call may pass in `extra=` that JSON lines carry as their own keys.
LOG_FIELDS = ("case_id", "event_id", "trace_id", "topic", "partition", "offset")


# --- logs ---------------------------------------------------------------------------------


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, component, logger, message and the record's
    case_id / event_id / trace_id when the call named them."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def setup_logging(settings: Settings, component: str) -> None:
    """The process's log format: text lines, or JSON lines with CASEGATE_LOG_FORMAT=json."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        formatter: logging.Formatter = JsonLines(component)
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    else:
        handler.setFormatter(
            logging.Formatter(f"[%(asctime)s] %(levelname)s {component} %(name)s: %(message)s")
        )
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


# --- metrics ------------------------------------------------------------------------------


def metrics_port(settings: Settings, component: str, instance: int = 0) -> int | None:
    """Where `component`'s instance serves /metrics; None when metrics are off."""
    if not settings.metrics_port:
        return None
    return settings.metrics_port + METRICS_OFFSETS[component] + 10 * instance


def serve_metrics(
    settings: Settings, component: str, instance: int, registry: CollectorRegistry
) -> int | None:
    """Start the /metrics endpoint in a daemon thread; the port, or None if not served."""
    port = metrics_port(settings, component, instance)
    if port is None:
        return None
    disable_created_metrics()  # `_created` series double every counter for nothing here
    try:
        start_http_server(port, addr=settings.metrics_host, registry=registry)
    except OSError as exc:
        log.warning(
            "metrics not served: %s:%d is taken (%s); set CASEGATE_METRICS_PORT to another "
            "base, or 0 to turn metrics off",
            settings.metrics_host,
            port,
            exc,
        )
        return None
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
    return port


# --- traces -------------------------------------------------------------------------------


def _one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def make_tracer(settings: Settings, component: str) -> Tracer | None:
    """The process's tracer, or None when tracing is off (then nothing is recorded)."""
    if settings.tracing == "off":
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"casegate-{component}"}))
    if settings.tracing == "console":
        exporter: SpanExporter = ConsoleSpanExporter(out=sys.stdout, formatter=_one_line)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise SystemExit(
                "CASEGATE_TRACING=otlp needs the OTLP exporter: pip install 'casegate[otlp]'"
            ) from exc
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    return provider.get_tracer("casegate")


def record_span(
    tracer: Tracer,
    name: str,
    event: Any,
    position: tuple[str, int, int],
    traceparent: bytes | None,
) -> Span:
    """The span of one consumed record (``position``: topic, partition, offset), child of
    the trace its ``traceparent`` header names (a new trace without one)."""
    topic, partition, offset = position
    return tracer.start_span(
        name,
        context=context_of(traceparent),
        kind=SpanKind.CONSUMER,
        attributes={
            "casegate.case_id": event.case_id,
            "casegate.event_id": event.event_id,
            "casegate.event_type": event.event_type,
            "messaging.destination.name": topic,
            "messaging.kafka.partition": partition,
            "messaging.kafka.offset": offset,
        },
    )


def traceparent_of(headers: Iterable[tuple[str, Any]] | None) -> bytes | None:
    """The record's W3C traceparent header, if it carries one."""
    for name, value in headers or ():
        if name == TRACEPARENT and value:
            return value if isinstance(value, bytes) else str(value).encode()
    return None


def context_of(traceparent: bytes | None) -> Context | None:
    """The remote parent a traceparent names (None: start a new trace)."""
    if traceparent is None:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: traceparent.decode("ascii", "replace")})


def traceparent_for(span: Span) -> bytes:
    """The traceparent header that makes `span` the parent of what reads the record."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier[TRACEPARENT].encode()


def trace_id_of(traceparent: bytes | None) -> str | None:
    """The 32-hex-digit trace id in a traceparent (`00-<trace>-<span>-<flags>`)."""
    if traceparent is None:
        return None
    parts = traceparent.decode("ascii", "replace").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def with_traceparent(
    headers: Sequence[tuple[str, bytes]] | None, traceparent: bytes | None
) -> list[tuple[str, bytes]]:
    """`headers` with `traceparent` in place of any other."""
    kept = [(n, v) for n, v in headers or () if n != TRACEPARENT]
    return [*kept, (TRACEPARENT, traceparent)] if traceparent is not None else kept
