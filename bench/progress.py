"""Throughput measured from outside the processes under test: records on a topic (as a
read-committed reader sees them) or decisions the read models have committed, sampled over
time.

A rate is taken between the moments 10 % and 90 % of the expected records were reached, so
start-up (group joins, history and table recovery) and the tail of the last batch do not
count: it is the sustained rate, which is what a backlog drains at.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.db import database_urls
from infra.kafka import common_config
from infra.settings import Settings


class TopicCounter:
    """Records on topics so far that a read-committed reader can see, counted by reading.

    Offsets are not records: a transactional producer's commit markers take offsets too,
    and an aborted transaction's records are never seen downstream.
    """

    def __init__(self, settings: Settings, *topics: str) -> None:
        self._consumer = Consumer(
            {
                **common_config(settings),
                "group.id": f"bench-count-{uuid.uuid4()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._consumer.assign(
            [
                TopicPartition(settings.topic(t), p, OFFSET_BEGINNING)
                for t in topics
                for p in range(settings.partitions)
            ]
        )
        self._count = 0

    def __call__(self) -> int:
        while batch := self._consumer.consume(10_000, 0.01):
            self._count += sum(1 for m in batch if m.error() is None)
        return self._count

    def close(self) -> None:
        self._consumer.close()


class DecidedCounter:
    """Recommendations the read models hold a guard decision for (committed rows)."""

    def __init__(self, settings: Settings) -> None:
        self._conn = psycopg.connect(database_urls(settings).app, autocommit=True)

    def __call__(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM recommendation_facts WHERE outcome IS NOT NULL"
        ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


@dataclass
class Progress:
    """(seconds, count) samples of one run."""

    expect: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    def crossing(self, fraction: float) -> float:
        """When the count first reached ``fraction`` of ``expect`` (linear between samples)."""
        goal = fraction * self.expect
        prev_t, prev_n = 0.0, 0
        for t, n in self.samples:
            if n >= goal:
                if n == prev_n:
                    return t
                return prev_t + (t - prev_t) * (goal - prev_n) / (n - prev_n)
            prev_t, prev_n = t, n
        raise ValueError(f"never reached {goal:.0f} of {self.expect}")

    def sustained_rate(self, lo: float = 0.1, hi: float = 0.9) -> float:
        """Records/s between the ``lo`` and ``hi`` crossings."""
        return (hi - lo) * self.expect / max(1e-9, self.crossing(hi) - self.crossing(lo))


def wait_for(
    count: Callable[[], int],
    expect: int,
    timeout_s: float,
    interval_s: float = 0.1,
    alive: Callable[[], None] = lambda: None,
) -> Progress:
    """Sample ``count`` until it reaches ``expect``; ``alive`` raises if a child died."""
    progress = Progress(expect)
    started = time.monotonic()
    while True:
        n = count()
        now = time.monotonic() - started
        progress.samples.append((now, n))
        if n >= expect:
            return progress
        if now > timeout_s:
            raise TimeoutError(f"{n} of {expect} records after {timeout_s:.0f} s")
        alive()
        time.sleep(interval_s)
