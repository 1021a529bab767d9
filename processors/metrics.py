"""What a processor tells Prometheus (`/metrics`, see infra.telemetry).

Counted per batch, once its transaction has committed: a batch that was aborted and read
again counts once. Names follow Prometheus conventions (`_total` for counters, base
units); every series carries `component` (intake, recommend, guard, approve, execute).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from processors.handler import Outbox

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
EXECUTION_OUTCOMES = {
    "ExecutionSucceeded": "succeeded",
    "ExecutionFailed": "failed",
    "ExecutionRolledBack": "rolled_back",
}


class LoopMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        component: str,
        prefix: str,
        timed: Iterable[str] = (),
    ) -> None:
        self.component = component
        self.prefix = prefix  # topic labels are logical names ("cases"), whatever the prefix
        c = ["component"]
        self.consumed = Counter(
            "casegate_records_consumed",
            "Records read from the processor's input topics (committed batches).",
            [*c, "topic"],
            registry=registry,
        )
        self.produced = Counter(
            "casegate_records_produced",
            "Records produced: events, forwards and dead letters, by topic.",
            [*c, "topic"],
            registry=registry,
        )
        self.events = Counter(
            "casegate_events_produced",
            "Events produced, by event type.",
            [*c, "event_type"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "casegate_dead_letters",
            "Records dead-lettered, by the error class of the reason.",
            [*c, "reason"],
            registry=registry,
        )
        self.executions = Counter(
            "casegate_executions",
            "Execution outcomes produced by the executor.",
            [*c, "outcome"],
            registry=registry,
        )
        self.transactions = Counter(
            "casegate_transactions",
            "Kafka transactions, by outcome (committed, aborted).",
            [*c, "outcome"],
            registry=registry,
        )
        self.batch_records = Histogram(
            "casegate_batch_records",
            "Records per batch.",
            c,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.handle_seconds = Histogram(
            "casegate_handle_seconds",
            "Time the handler took to decide one batch.",
            c,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "casegate_transaction_seconds",
            "Time from beginning a batch's transaction to its commit.",
            c,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "casegate_consumer_lag",
            "Records not yet read per input partition (high watermark - position).",
            [*c, "topic", "partition"],
            registry=registry,
        )
        self.policy = Gauge(
            "casegate_policy_version_info",
            "The policy version in force (value 1).",
            [*c, "version"],
            registry=registry,
        )
        self.state_entries = Gauge(
            "casegate_state_entries",
            "Entries in each state store of this worker's partitions.",
            [*c, "store"],
            registry=registry,
        )
        self.last_error = Gauge(
            "casegate_last_error_timestamp_seconds",
            "When the last dead letter or aborted transaction happened (epoch seconds).",
            c,
            registry=registry,
        )
        self._timed = {
            what: (
                Gauge(f"casegate_{what}_pending", f"Pending {what}.", c, registry=registry),
                Gauge(
                    f"casegate_{what}_expiring",
                    f"Pending {what} whose expiry falls within the next hour.",
                    c,
                    registry=registry,
                ),
            )
            for what in timed
        }
        self._policy_version: str | None = None
        self._lag_seen: set[tuple[str, str, str]] = set()

    def batch(self, consumed: Mapping[str, int], handle_s: float, txn_s: float) -> None:
        """A committed batch: records read, its size and timings."""
        component = self.component
        for topic, n in consumed.items():
            self.consumed.labels(component, topic).inc(n)
        self.batch_records.labels(component).observe(sum(consumed.values()))
        self.handle_seconds.labels(component).observe(handle_s)
        self.commit_seconds.labels(component).observe(txn_s)

    def committed(self, out: Outbox) -> None:
        """Any committed transaction (a batch's, a timer's, retention's): what it produced."""
        component = self.component
        self.transactions.labels(component, "committed").inc()
        for topic, n in Tally(r.topic.removeprefix(self.prefix) for r in out.records).items():
            self.produced.labels(component, topic).inc(n)
        for event_type, n in out.event_types.items():
            self.events.labels(component, event_type).inc(n)
            if event_type in EXECUTION_OUTCOMES:
                self.executions.labels(component, EXECUTION_OUTCOMES[event_type]).inc(n)
        for reason, n in out.reasons.items():
            self.dead_letters.labels(component, reason).inc(n)
        if out.reasons:
            self.last_error.labels(component).set(time.time())

    def aborted(self) -> None:
        self.transactions.labels(self.component, "aborted").inc()
        self.last_error.labels(self.component).set(time.time())

    def lags(self, lags: Iterable[tuple[str, int, int]]) -> None:
        for topic, partition, lag in lags:
            labels = (self.component, topic.removeprefix(self.prefix), str(partition))
            self.lag.labels(*labels).set(lag)
            self._lag_seen.add(labels)

    def forget_lag(self, partitions: Iterable[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            labels = (self.component, topic.removeprefix(self.prefix), str(partition))
            if labels in self._lag_seen:
                self.lag.remove(*labels)
                self._lag_seen.discard(labels)

    def policy_in_force(self, version: str | None) -> None:
        if version == self._policy_version:
            return
        if self._policy_version is not None:
            self.policy.remove(self.component, self._policy_version)
        if version is not None:
            self.policy.labels(self.component, version).set(1)
        self._policy_version = version

    def pending(self, what: str, pending: int, expiring: int) -> None:
        gauges = self._timed[what]
        gauges[0].labels(self.component).set(pending)
        gauges[1].labels(self.component).set(expiring)

    def stores(self, counts: Mapping[str, int]) -> None:
        for store, n in counts.items():
            self.state_entries.labels(self.component, store).set(n)
