"""One replay (`projections.replay.rebuild`, the code `casegate replay` runs) in a process of
its own, so the bench samples its memory from /proc like any other component's.

``python -m bench.replayer`` (settings from the environment, like a worker); the schema to
rebuild into and the JSON file to write come from ``BENCH_REPLAY_SCHEMA`` and
``BENCH_REPLAY_OUT``; ``BENCH_REPLAY_CONSUMER`` (JSON, optional) adds librdkafka settings
to the replay's consumer, for measuring one of them (the prefetch queue's size, say). The
JSON holds the replay's report, its progress as (CLOCK_MONOTONIC seconds, events so far)
pairs (that clock is shared by every process on the host, so the bench can line the
progress up with the memory it sampled) and, when PostgreSQL runs on this host, the CPU
seconds its server processes spent on the replay's connections (``database_cpu_s``; null
when they cannot be read): the replay's cost is split between this process and those.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
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
        return made(settings, group_id, **{**overrides, **extra})

    projections_worker.make_consumer = make_consumer  # type: ignore[assignment]


def _cpu_s(pid: int) -> float | None:
    """utime + stime of a process on this host, in seconds (None if it is not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """The CPU of the PostgreSQL processes serving the replay, sampled until they exit (a
    server process ends with its connection, so its last sample is at most ``every_s``
    short)."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.unreadable = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        cpu = _cpu_s(pid)
        if cpu is None:
            self.unreadable = True  # another host, or no right to read it
            return
        self.first[pid] = self.last[pid] = cpu

    def _sample(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            for pid in list(self.first):
                cpu = _cpu_s(pid)
                if cpu is not None:
                    self.last[pid] = cpu

    def seconds(self) -> float | None:
        self._stop.set()
        self._thread.join()
        if self.unreadable or not self.first:
            return None
        return sum(self.last[pid] - self.first[pid] for pid in self.first)


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

    server = ServerCpu()
    report = rebuild(
        Settings(),
        Codec.load(),
        schema=os.environ[SCHEMA_VAR],
        advance=advance,
        server_process=server.watch,
    )
    out.write_text(
        json.dumps(
            {
                "report": dataclasses.asdict(report),
                "progress": progress,
                "database_cpu_s": server.seconds(),
            }
        )
    )


if __name__ == "__main__":
    main()
