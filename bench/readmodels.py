"""The read models' live latency alone: paced cases through ``projections.worker readmodels``.

``python -m bench.readmodels [--rate 500] [--seconds 30] [--runs 2] [--baseline DIR]``

Each run gets a fresh sandbox and its own worker (``python -m projections.worker
readmodels``, the process production runs). Per case, the bench produces what the read
models see of it from a running system, back to back: CaseOpened to ``cases``,
RecommendationProduced to ``recommendations``, GuardrailDecided to ``decisions``
(``bench.workload``'s replay mix, each record with a ``traceparent`` header as the
pipeline carries one), open loop at ``--rate`` cases per second. A case's latency is from
producing its first record to its ``approval_queue`` row being committed, as a LISTEN sees
it (``bench.latency``'s trigger on ``recommendation_facts``, plus one on ``case_state`` for
a case whose CaseOpened is projected after its decision).

Each batch's write is timed from PostgreSQL's side, without instrumenting the worker: a
statement trigger on ``audit_log`` (one COPY per batch) notifies the transaction's start
(``now()``) and its row count, and the notification arrives when the transaction has
committed. ``--baseline DIR`` runs the worker of another checkout of the code (``git
archive`` of a commit, say) in every other run, against the same sandbox set-up, so a
change is compared with the code before it in the same run; the sandbox is migrated by
this checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from bench import latency, workload
from bench.procs import LOGS
from infra import sandbox
from infra.db import database_urls
from infra.kafka import producer_config
from infra.settings import PROJECT_ROOT, Settings
from schemas.codec import Codec

# The channel names are written out in the SQL and in LISTEN alike: SQL text is never built.
CASE_TRIGGER = """
CREATE OR REPLACE FUNCTION bench_queued_case() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_queued', q.case_id)
    FROM (SELECT DISTINCT case_id FROM new_rows) n
    JOIN approval_queue q ON q.case_id = n.case_id;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_queued_case_insert AFTER INSERT ON case_state
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_queued_case();
CREATE TRIGGER bench_queued_case_update AFTER UPDATE ON case_state
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_queued_case();
"""
BATCH_TRIGGER = """
CREATE OR REPLACE FUNCTION bench_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_batch', concat_ws(' ', txid_current(),
        extract(epoch FROM now()), (SELECT count(*) FROM new_rows)));
    RETURN NULL;
END $$;
CREATE TRIGGER bench_batch AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_batch();
"""
WARM_UP = 200  # cases sent (and waited for) before the timed ones


@dataclasses.dataclass(frozen=True)
class Written:
    """One batch's transaction as PostgreSQL saw it: wall-clock start, commit seen, rows."""

    started: float
    committed: float
    rows: int

    @property
    def ms(self) -> float:
        return (self.committed - self.started) * 1000


class Batches:
    """Collects the ``bench_batch`` notifications: one per batch's audit COPY."""

    def __init__(self, settings: Settings) -> None:
        self.seen: list[Written] = []
        self._conn = psycopg.connect(database_urls(settings).app, autocommit=True)
        self._conn.execute("LISTEN bench_batch")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for note in self._conn.notifies(timeout=0.2):
                at = time.time()
                _txid, started, rows = note.payload.split()
                self.seen.append(Written(float(started), at, int(rows)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self._conn.close()


@dataclasses.dataclass
class Run:
    code: str
    latencies: latency.Latencies
    batches: list[Written]


def _traceparent(number: int) -> bytes:
    """A W3C traceparent per case, as the upstream sends one."""
    return b"00-%032x-%016x-01" % (number + 1, number + 1)


def triples(cases: int, codec: Codec, first: int) -> Iterator[list[workload.Encoded]]:
    """Per case its three records, each with the case's traceparent header."""
    records = workload.replay_mix(cases + first, codec)
    for number in range(cases + first):
        three = [next(records) for _ in range(3)]
        if number < first:
            continue
        parent = _traceparent(number)
        yield [dataclasses.replace(r, headers=[*r.headers, ("traceparent", parent)]) for r in three]


def one_run(base: Settings, admin: str, code: Path, rate: float, seconds: float) -> Run:
    """A fresh sandbox, the worker of ``code``, ``rate`` cases/s for ``seconds``."""
    import subprocess
    import sys

    made = sandbox.create(base, admin, "rmlat")
    codec = Codec.load()
    try:
        latency.install_trigger(made)
        with psycopg.connect(database_urls(made).admin, autocommit=True) as conn:
            conn.execute(CASE_TRIGGER)
            conn.execute(BATCH_TRIGGER)
        queued, batches = latency.Listener(made), Batches(made)
        env = {
            **sandbox.child_env(made),
            "CASEGATE_LOG_LEVEL": "WARNING",
            # The baseline's checkout has no secrets of its own: it reaches this server.
            "DATABASE_URL": database_urls(made).app,
            "CASEGATE_HOME": str(base.home),
        }
        LOGS.mkdir(parents=True, exist_ok=True)
        log = (LOGS / f"{made.topic_prefix}readmodels.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "projections.worker", "readmodels"],
            cwd=code,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        producer = Producer(producer_config(made, **{"linger.ms": 1}))
        try:
            count = int(rate * seconds)
            warm = [r for three in triples(WARM_UP, codec, count) for r in three]
            for r in warm:
                producer.produce(made.topic(r.topic), key=r.key, value=r.value, headers=r.headers)
            producer.flush(30)
            queued.wait([r.key.decode() for r in warm], 120)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            batches.seen.clear()
            measured = _paced(made, producer, queued, list(triples(count, codec, 0)), rate)
        finally:
            worker.terminate()
            worker.wait(30)
            queued.close()
            batches.close()
        return Run(str(code), measured, batches.seen)
    finally:
        sandbox.destroy(base, admin, [made])


def _paced(
    settings: Settings,
    producer: Producer,
    listener: latency.Listener,
    cases: list[list[workload.Encoded]],
    rate: float,
) -> latency.Latencies:
    """Each case's three records at its own scheduled time (open loop)."""
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    for i, three in enumerate(cases):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at[three[0].key.decode()] = time.perf_counter()
        for r in three:
            producer.produce(settings.topic(r.topic), key=r.key, value=r.value, headers=r.headers)
        producer.poll(0)
    producer.flush(30)
    listener.wait(list(sent_at), 60)
    arrived = {c: t for c, t in sent_at.items() if c in listener.seen}
    return latency.Latencies(
        len(sent_at), [(listener.seen[c] - t) * 1000 for c, t in arrived.items()]
    )


def _pct(values: list[float], p: float) -> float:
    ranked = sorted(values)
    return ranked[max(0, math.ceil(p / 100 * len(ranked)) - 1)] if ranked else float("nan")


def report(run: Run) -> str:
    lat, written = run.latencies, run.batches
    ms = [w.ms for w in written]
    rows = [w.rows for w in written]
    return (
        f"{run.code}: latency p50 {lat.percentile(50):.1f} / p99 {lat.percentile(99):.1f} / "
        f"p99.9 {lat.percentile(99.9):.1f} / max {max(lat.ms, default=float('nan')):.1f} ms "
        f"({len(lat.ms):,} of {lat.sent:,} cases); {len(written):,} batches, write ms "
        f"p50 {_pct(ms, 50):.1f} / p90 {_pct(ms, 90):.1f} / p99 {_pct(ms, 99):.1f} / "
        f"max {max(ms, default=float('nan')):.1f}; rows per batch median "
        f"{statistics.median(rows) if rows else 0:.0f}, max {max(rows, default=0)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.readmodels")
    parser.add_argument("--rate", type=float, default=500.0, help="cases per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=1, help="runs of each code")
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with")
    args = parser.parse_args()
    base = Settings()
    admin = sandbox.server_admin_url(base)
    codes = [PROJECT_ROOT] if args.baseline is None else [args.baseline, PROJECT_ROOT]
    for _ in range(args.runs):
        for code in codes:
            print(report(one_run(base, admin, code, args.rate, args.seconds)), flush=True)
            print(f"  load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
