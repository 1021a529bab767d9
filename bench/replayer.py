"""One replay (`projections.replay.rebuild`, the code `casegate replay` runs) in a process of
its own, so the bench samples its memory from /proc like any other component's.

``python -m bench.replayer`` (settings from the environment, like a worker); the schema to
rebuild into and the JSON file to write come from ``BENCH_REPLAY_SCHEMA`` and
``BENCH_REPLAY_OUT``; ``BENCH_REPLAY_CONSUMER`` (JSON, optional) adds librdkafka settings
to the replay's consumer, for measuring one of them (the prefetch queue's size, say). The
JSON holds the replay's report and its progress as
(CLOCK_MONOTONIC seconds, events so far) pairs: that clock is shared by every process on
the host, so the bench can line the progress up with the memory it sampled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from infra.settings import Settings
from projections import worker as projections_worker
from projections.replay import rebuild
from schemas.codec import Codec

SCHEMA_VAR = "BENCH_REPLAY_SCHEMA"
OUT_VAR = "BENCH_REPLAY_OUT"
CONSUMER_VAR = "BENCH_REPLAY_CONSUMER"


def _with_consumer_settings(extra: dict[str, Any]) -> None:
    """The replay builds its consumer with projections.worker.make_consumer: add ``extra``."""
    made = projections_worker.make_consumer

    def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
        return made(settings, group_id, **{**extra, **overrides})

    projections_worker.make_consumer = make_consumer  # type: ignore[assignment]


def main() -> None:
    out = Path(os.environ[OUT_VAR])
    if os.environ.get(CONSUMER_VAR):
        _with_consumer_settings(json.loads(os.environ[CONSUMER_VAR]))
    progress: list[tuple[float, int]] = []
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress.append((time.monotonic(), done))

    report = rebuild(Settings(), Codec.load(), schema=os.environ[SCHEMA_VAR], advance=advance)
    out.write_text(json.dumps({"report": dataclasses.asdict(report), "progress": progress}))


if __name__ == "__main__":
    main()
