"""Entry point of one projection process: ``python -m projections.worker NAME``."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable

import psycopg

from infra.db import database_urls
from infra.kafka import make_consumer, make_producer
from infra.settings import Settings
from projections.case_state import CaseStateProjection
from projections.runner import Projection, ProjectionRunner, group_id
from schemas.codec import Codec

PROJECTIONS: dict[str, Callable[[], Projection]] = {"case_state": CaseStateProjection}


def build_runner(settings: Settings, codec: Codec, name: str) -> ProjectionRunner:
    """Wire one projection to its own connection, consumer and dead-letter producer."""
    projection = PROJECTIONS[name]()
    conn = psycopg.connect(database_urls(settings).app)
    return ProjectionRunner(
        settings=settings,
        codec=codec,
        projection=projection,
        conn=conn,
        consumer=make_consumer(settings, group_id(settings, name)),
        producer=make_producer(settings),
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in PROJECTIONS:
        sys.exit(f"usage: python -m projections.worker {{{'|'.join(PROJECTIONS)}}}")
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    runner = build_runner(settings, Codec.load(), args[0])
    stop = threading.Event()
    # Finish the batch in hand, then stop: SIGTERM never leaves a half-written batch.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runner.run(stop)


if __name__ == "__main__":
    main()
