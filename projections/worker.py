"""Entry point of the read-model process: ``python -m projections.worker readmodels``."""

from __future__ import annotations

import sys
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry

from infra.db import check_app_role, database_urls
from infra.kafka import make_consumer, make_producer
from infra.kafka_auth import as_principal
from infra.secrets import anchor_key, install_event_id_key
from infra.settings import Settings
from infra.setup_errors import SetupError
from infra.stopping import stop_on_signals
from infra.telemetry import make_tracer, serve_metrics, setup_logging
from infra.topics import PROJECTED
from projections.anchors import AnchorPublisher
from projections.audit import AuditLogProjection
from projections.case_state import CaseStateProjection
from projections.metrics import ReadModelMetrics
from projections.recommendations import RecommendationFactsProjection
from projections.rollout import RolloutProjection
from projections.runner import ProjectionRunner, group_id
from projections.timeline import CaseTimelineProjection
from schemas.codec import Codec

NAME = "readmodels"
PROJECTIONS = (NAME,)
# librdkafka's read-ahead: by default it keeps up to queued.min.messages (100,000) per
# partition within queued.max.messages.kbytes (64 MB), and over a backlog (a replay, a
# restart after an outage) it fills them. Measured on a 200,000-event replay, the byte caps
# took ~100 MB off the process's peak memory and nothing off its speed. A count cap
# (queued.min.messages: 500) was tried too and left out: at a live 1,500 events/s it held
# fetches back, and the read models' latency went from 113 ms to 691 ms (p50); the byte
# cap bounds the memory alone.
READ_AHEAD = {
    "queued.max.messages.kbytes": 2048,
    "fetch.max.bytes": 1024 * 1024,
    "max.partition.fetch.bytes": 256 * 1024,
}


def build_runner(
    settings: Settings,
    codec: Codec,
    conn: psycopg.Connection | None = None,
    name: str = NAME,
    emit_dead_letters: bool = True,
    batch_size: int = 5000,
    consumer_settings: dict[str, Any] | None = None,
    registry: CollectorRegistry | None = None,
    anchor: bool = True,
) -> ProjectionRunner:
    """Every read model in one consumer: each record is decoded once and all tables move
    together in one transaction per batch. With a ``registry`` it counts what it does
    there, and it traces each event when ``CASEGATE_TRACING`` is on. With ``anchor`` it
    publishes the audit chains' heads (``projections.anchors``)."""
    # Upstream chooses the ids on `cases` (intake re-publishes its records byte for byte).
    audit = AuditLogProjection(checked_topics=frozenset({settings.topic("cases")}))
    # The live worker (no connection handed in) reconnects by itself after PostgreSQL
    # restarts; a caller that brings its own connection (a replay) owns its failures.
    reconnect = None
    if conn is None:
        url = database_urls(settings).app
        conn = psycopg.connect(url)

        def reconnect() -> psycopg.Connection:
            return psycopg.connect(url, connect_timeout=10)

    producer = make_producer(settings)
    return ProjectionRunner(
        settings=settings,
        codec=codec,
        name=name,
        topics=[t.name for t in PROJECTED],
        dedupe=audit,
        # The audit log first: it records what the others then apply.
        projections=[
            audit,
            CaseTimelineProjection(),
            CaseStateProjection(),
            RecommendationFactsProjection(),
            RolloutProjection(),
        ],
        conn=conn,
        consumer=make_consumer(
            settings, group_id(settings, name), **{**READ_AHEAD, **(consumer_settings or {})}
        ),
        producer=producer,
        batch_size=batch_size,
        emit_dead_letters=emit_dead_letters,
        reconnect=reconnect,
        metrics=ReadModelMetrics(registry, settings.topic_prefix) if registry else None,
        tracer=make_tracer(settings, NAME) if registry else None,
        anchors=AnchorPublisher(settings, producer, anchor_key(settings)) if anchor else None,
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args != [NAME]:
        sys.exit(f"usage: python -m projections.worker {NAME}")
    settings = as_principal(Settings(), NAME)
    install_event_id_key(settings)
    setup_logging(settings, f"{NAME}-{settings.instance}")
    try:
        check_app_role(database_urls(settings).app)
    except SetupError as exc:
        sys.exit(f"{NAME}: {exc} ({exc.hint})")
    registry = CollectorRegistry()
    serve_metrics(settings, NAME, settings.instance, registry)
    runner = build_runner(settings, Codec.load(), registry=registry)
    runner.run(stop_on_signals())


if __name__ == "__main__":
    main()
