"""The console process: ``python -m cli.serve`` (composition root of the API and pages).

Binds 127.0.0.1 only; put a TLS proxy in front to serve it further (and set
CASEGATE_CONSOLE_SECURE_COOKIE=true there).
"""

from __future__ import annotations

import logging

import uvicorn
from prometheus_client import CollectorRegistry
from psycopg_pool import ConnectionPool

from console.app import create_app
from infra.db import database_urls
from infra.kafka import make_producer
from infra.kafka_auth import as_principal
from infra.settings import Settings
from infra.telemetry import serve_metrics, setup_logging
from schemas.codec import Codec

log = logging.getLogger("console")


def main() -> None:
    settings = as_principal(Settings(), "console")
    setup_logging(settings, "console")
    registry = CollectorRegistry()
    serve_metrics(settings, "console", 0, registry)
    codec = Codec.load()
    # Autocommit for reads; writes open an explicit transaction (console.api.writes).
    pool = ConnectionPool(
        database_urls(settings).app,
        min_size=1,
        max_size=8,
        kwargs={"autocommit": True},
        open=False,
        name="console",
    )
    pool.open(wait=True, timeout=30)
    producer = make_producer(settings)
    try:
        app = create_app(
            settings, conn_pool=pool, producer=producer, codec=codec, registry=registry
        )
        log.info("console on http://127.0.0.1:%d (API docs at /api/docs)", settings.console_port)
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=settings.console_port,
            log_level=settings.log_level.lower(),
            # Access lines carry method, path and status only: never headers, so never tokens.
            access_log=True,
            server_header=False,
        )
    finally:
        producer.flush(10)
        pool.close()


if __name__ == "__main__":
    main()
