"""Throughput measured from outside the processes under test: records on a topic (high
watermarks) or events a projection has committed (``projection_offsets``), sampled over time.

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
from confluent_kafka import Consumer, TopicPartition

from infra.db import database_urls
from infra.kafka import common_config
from infra.settings import Settings


class TopicCounter:
    """Records on topics so far: the sum of their partitions' high watermarks.

    Exact for the processors' output: they produce idempotently without transactions, so
    every offset is one record.
    """

    def __init__(self, settings: Settings, *topics: str) -> None:
        self._consumer = Consumer(
            {**common_config(settings), "group.id": f"bench-count-{uuid.uuid4()}"}
        )
        self._tps = [
            TopicPartition(settings.topic(t), p) for t in topics for p in range(settings.partitions)
        ]

    def __call__(self) -> int:
        return sum(self._consumer.get_watermark_offsets(tp, 10)[1] for tp in self._tps)

    def close(self) -> None:
        self._consumer.close()


class ProjectedCounter:
    """Records of ``topic`` the read models have committed, from ``projection_offsets``
    (the position written in the same transaction as the rows)."""

    def __init__(self, settings: Settings, topic: str, consumer: str = "projection.readmodels"):
        self._conn = psycopg.connect(database_urls(settings).app, autocommit=True)
        self._args = (consumer, settings.topic(topic))

    def __call__(self) -> int:
        row = self._conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM projection_offsets "
            "WHERE consumer = %s AND topic = %s",
            self._args,
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
