"""What the read-model worker tells Prometheus (`/metrics`, see infra.telemetry).

The records read, dead letters, consumer lag and last error use the processors' own series
(`processors.metrics.LoopMetrics`, component ``readmodels``), so that `casegate status` and
the dashboard read every process alike; the rest is the read models' own: events applied
per topic, duplicates skipped, rows per batch and the commit's latency. Counted once a
batch has committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

from processors.metrics import BATCH_BUCKETS, SECONDS_BUCKETS, LoopMetrics

COMPONENT = "readmodels"


class ReadModelMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.prefix = prefix
        self.loop = LoopMetrics(registry, COMPONENT, prefix)
        self.events = Counter(
            "casegate_readmodel_events",
            "Events applied to the read models (new ones: duplicates are not), by topic.",
            ["topic"],
            registry=registry,
        )
        self.duplicates = Counter(
            "casegate_readmodel_duplicates",
            "Events skipped because the audit log already held their event id.",
            registry=registry,
        )
        self.batch_rows = Histogram(
            "casegate_readmodel_batch_rows",
            "Events written per committed batch.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "casegate_readmodel_commit_seconds",
            "Time of a batch's PostgreSQL transaction, from BEGIN to COMMIT.",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    def committed(
        self,
        consumed: Mapping[str, int],
        fresh: Mapping[str, int],
        duplicates: int,
        seconds: float,
    ) -> None:
        loop = self.loop
        for topic, n in consumed.items():
            loop.consumed.labels(COMPONENT, topic.removeprefix(self.prefix)).inc(n)
        for topic, n in fresh.items():
            self.events.labels(topic.removeprefix(self.prefix)).inc(n)
        if duplicates:
            self.duplicates.inc(duplicates)
        self.batch_rows.observe(sum(fresh.values()))
        self.commit_seconds.observe(seconds)
        loop.transactions.labels(COMPONENT, "committed").inc()

    def dead_letter(self, reason: str) -> None:
        self.loop.dead_letters.labels(COMPONENT, reason).inc()
        self.loop.last_error.labels(COMPONENT).set(time.time())

    def failed(self) -> None:
        """A batch's transaction failed (rolled back; its records are read again)."""
        self.loop.aborted()

    def lags(self, lags: Iterable[tuple[str, int, int]]) -> None:
        self.loop.lags(lags)
