"""One replay (`projections.replay.rebuild`, the code `casegate replay` runs) in a process of
its own, so the bench samples its memory from /proc like any other component's.

``python -m bench.replayer --measure EVENTS [--runs N]`` measures the replay alone, with
its own same-run baseline: a sandbox holding the bench's replay mix (EVENTS events, a
third each CaseOpened, RecommendationProduced, GuardrailDecided), ``bench.raw.raw_consume``
over its CaseOpened (copied to the intake topic, which raw_consume reads and the read
models do not; five runs, then two after each replay), then N replays in a child each:
events/s, the ratio to the raw median, peak RSS, and CPU per event in this child and in
its PostgreSQL server processes.

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

import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from bench.proc_stats import cpu_s
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
        cpu = cpu_s(pid)
        if cpu is None:
            self.unreadable = True  # another host, or no right to read it
            return
        self.first[pid] = self.last[pid] = cpu

    def _sample(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            for pid in list(self.first):
                cpu = cpu_s(pid)
                if cpu is not None:
                    self.last[pid] = cpu

    def seconds(self) -> float | None:
        self._stop.set()
        self._thread.join()
        if self.unreadable or not self.first:
            return None
        return sum(self.last[pid] - self.first[pid] for pid in self.first)


def measure(events: int, runs: int) -> None:
    """The replay of ``events`` events ``runs`` times against raw consumption of the same
    sandbox, in the same run (see the module docstring)."""
    from bench import raw, workload
    from bench.procs import LOGS, Sampler, running
    from infra import sandbox
    from infra.topics import INTAKE

    base = Settings()
    admin = sandbox.server_admin_url(base)
    cases = -(-events // 3)
    made = sandbox.create(base, admin, "replay")
    try:
        codec = Codec.load()
        workload.produce(made, workload.replay_mix(cases, codec))
        # raw_consume reads the intake topic, which the read models do not project: the
        # mix's CaseOpened go there too, so the baseline reads the same bytes.
        opened = (r for r in workload.replay_mix(cases, codec) if r.topic == "cases")
        workload.produce(made, (dataclasses.replace(r, topic=INTAKE) for r in opened))
        rates = [raw.raw_consume(made, cases).rate for _ in range(5)]
        replays = []
        for i in range(runs):
            out = LOGS / f"{made.topic_prefix}replay-{i}.json"
            names = {SCHEMA_VAR: "bench_replay", OUT_VAR: str(out)}
            # The replay child's exact CPU: what this process's waited-for children used.
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with running(made, "replay", env=names) as children, Sampler(children):
                if children[0].proc.wait() != 0:
                    raise RuntimeError(f"replay exited with {children[0].proc.returncode}")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = json.loads(out.read_text())
            out.unlink()
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            replays.append((done, children[0].hwm_kb / 1024, cpu))
            rates += [raw.raw_consume(made, cases).rate for _ in range(2)]
    finally:
        sandbox.destroy(base, admin, [made])
    median = statistics.median(rates)
    print(
        f"raw_consume {median:,.0f} events/s (median of {len(rates)}; "
        f"{min(rates):,.0f} to {max(rates):,.0f}) over {cases:,} CaseOpened"
    )
    for done, peak_mb, cpu in replays:
        n, seconds = done["report"]["events"], done["report"]["seconds"]
        database = done.get("database_cpu_s")
        db = "not readable" if database is None else f"{database * 1000 / n:.4f}"
        print(
            f"replay {n / seconds:,.0f} events/s ({n:,} in {seconds:.1f} s), "
            f"replay / raw_consume {n / seconds / median:.3f}, peak RSS {peak_mb:.0f} MB, "
            f"CPU ms/event: replay process {cpu * 1000 / n:.4f}, PostgreSQL {db}"
        )


def main() -> None:
    if len(sys.argv) > 1:
        parser = argparse.ArgumentParser(prog="bench.replayer")
        parser.add_argument("--measure", type=int, required=True, metavar="EVENTS")
        parser.add_argument("--runs", type=int, default=1)
        args = parser.parse_args()
        measure(args.measure, args.runs)
        return
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
