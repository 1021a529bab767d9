"""End-to-end latency: from producing a CaseOpened to its approval_queue row being committed.

"Committed" is observed with PostgreSQL's own LISTEN/NOTIFY: a statement trigger on
``recommendation_facts`` (installed in the bench's sandbox database only, never by a
migration) notifies the case_id of every row that the ``approval_queue`` view now shows.
NOTIFY is delivered when, and only if, the projection's transaction commits, so the
receive time is the commit as a reader sees it — no processor is instrumented.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.raw import read_to_end
from bench.workload import Encoded
from infra.db import database_urls
from infra.kafka import common_config, producer_config
from infra.settings import Settings

# The channel name is written out in TRIGGER and LISTEN alike: SQL text is never built.
TRIGGER = """
CREATE OR REPLACE FUNCTION bench_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_queued', q.case_id)
    FROM (SELECT DISTINCT recommendation_id FROM new_rows) n
    JOIN approval_queue q ON q.recommendation_id = n.recommendation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_queued_insert AFTER INSERT ON recommendation_facts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_queued();
CREATE TRIGGER bench_queued_update AFTER UPDATE ON recommendation_facts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_queued();
"""
PERCENTILES = (50.0, 95.0, 99.0, 99.9)


def install_trigger(settings: Settings) -> None:
    with psycopg.connect(database_urls(settings).admin, autocommit=True) as conn:
        conn.execute(TRIGGER)


class Listener:
    """Records when each case's approval_queue row was first seen committed."""

    def __init__(self, settings: Settings) -> None:
        self.seen: dict[str, float] = {}
        self.error: Exception | None = None  # why listening stopped, if it did
        self._conn = psycopg.connect(database_urls(settings).app, autocommit=True)
        self._conn.execute("LISTEN bench_queued")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for note in self._conn.notifies(timeout=0.2):
                    self.seen.setdefault(note.payload, time.perf_counter())
        except Exception as exc:  # PostgreSQL went away: the run's latencies are void
            self.error = exc

    def wait(self, case_ids: Sequence[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"stopped listening for approval_queue rows: {self.error}")
            if all(c in self.seen for c in case_ids):
                return
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self._conn.close()


@dataclass
class Latencies:
    sent: int
    ms: list[float] = field(default_factory=list)
    # Per case: wall-clock (epoch s) when sent and when its row was seen committed.
    sent_wall: dict[str, float] = field(default_factory=dict)
    seen_wall: dict[str, float] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.sent - len(self.ms)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile, ms (nan when nothing arrived)."""
        if not self.ms:
            return float("nan")
        ranked = sorted(self.ms)
        return ranked[max(0, math.ceil(p / 100 * len(ranked)) - 1)]


class Sender:
    """The bench's producer for latency runs, warmed up before the first case is timed.

    A fresh idempotent librdkafka producer spends ~0.5 s on its first message (broker
    connection, producer id, metadata): the bench's cost, not casegate's. One record to
    a topic of the bench's own, which no casegate component reads, pays it up front.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(producer_config(settings))
        warmup = settings.topic("bench-warmup")
        admin = AdminClient(common_config(settings))
        for future in admin.create_topics([NewTopic(warmup, num_partitions=1)]).values():
            with contextlib.suppress(KafkaException):  # already there: fine
                future.result(30)
        self.producer.produce(warmup, value=b"warm-up")
        if self.producer.flush(30):
            raise RuntimeError("the bench's producer could not reach the broker")

    def close(self) -> None:
        self.producer.flush(30)


def paced(
    sender: Sender,
    listener: Listener,
    records: Sequence[Encoded],
    rate: float,
    settle_s: float = 30.0,
) -> Latencies:
    """Send ``records`` (CaseOpened) at ``rate`` per second, open loop: each at its own
    scheduled time, whether or not the system kept up, so queueing shows in the figures."""
    producer, settings = sender.producer, sender.settings
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    for i, r in enumerate(records):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at[r.key.decode()] = time.perf_counter()
        producer.produce(settings.topic(r.topic), key=r.key, value=r.value, headers=r.headers)
        producer.poll(0)
    producer.flush(30)
    listener.wait(list(sent_at), settle_s)
    wall = time.time() - time.perf_counter()  # perf_counter -> epoch seconds
    arrived = {c: t for c, t in sent_at.items() if c in listener.seen}
    return Latencies(
        len(sent_at),
        [(listener.seen[c] - t) * 1000 for c, t in arrived.items()],
        {c: t + wall for c, t in arrived.items()},
        {c: listener.seen[c] + wall for c in arrived},
    )


HOPS = ("intake", "recommend", "guard", "readmodels")


def hops(settings: Settings, measured: Latencies) -> dict[str, list[float]]:
    """Where the time went, per case, in ms: sent → the case re-published on `cases`
    (intake), → recommendation record (recommend), → decision record (guard), → row
    committed (read models).

    Uses the records' own CreateTime, which each processor's producer stamps when it
    sends: no processor is instrumented. Broker and bench share the clock (one host).
    """
    stamps = {t: _first_stamps(settings, t) for t in ("cases", "recommendations", "decisions")}
    out: dict[str, list[float]] = {h: [] for h in HOPS}
    for case, sent in measured.sent_wall.items():
        accepted = stamps["cases"].get(case)
        rec, dec = stamps["recommendations"].get(case), stamps["decisions"].get(case)
        if accepted is None or rec is None or dec is None:
            continue
        out["intake"].append(accepted - sent * 1000)
        out["recommend"].append(rec - accepted)
        out["guard"].append(dec - rec)
        out["readmodels"].append(measured.seen_wall[case] * 1000 - dec)
    return out


def _first_stamps(settings: Settings, topic: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for msg in read_to_end(settings, settings.topic(topic)):
        key = msg.key()
        if key is not None:
            found.setdefault(key.decode(), float(msg.timestamp()[1]))
    return found
