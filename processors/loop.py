"""The one batch loop every processor runs on: confluent-kafka, exactly-once by Kafka
transactions.

One turn:
1. take a batch: what the consumer has fetched, up to `batch_max` records, waiting at most
   `batch_wait_ms` after the first one for more;
2. decode each record once; one that cannot be decoded, does not belong on its topic or
   is not keyed by its case is dead-lettered, and the rest of the batch goes on;
3. `handler.handle(batch, step)`: the pure decisions, filling the outbox and the state
   overlay;
4. in ONE transaction: the events, forwarded records and dead letters, a changelog record
   per state change, and the input offsets (`send_offsets_to_transaction`); commit;
5. only then does the local store take the state changes.
A crash anywhere before the commit leaves nothing visible to read-committed consumers and
the offsets where they were: the batch is simply read and decided again. After the commit,
events, state and offsets have moved together. State therefore never runs ahead of the
events (or behind them), per batch.

An abortable transaction error aborts and rewinds the batch; a fatal one (this producer
was fenced by a newer instance with the same transactional id, say) ends the process,
for its supervisor to restart it. State is restored from the changelog topics whenever
partitions are assigned (rebalance, restart). Timers (`Handler.on_due`) and retention
(entries past `expires_ms`) are driven from the poll timeout, each in a transaction of
its own that also carries the current offsets, so a worker that lost its partitions is
fenced instead of writing state it no longer owns. A handler's periodic work
(`Handler.every`, every `every_s`) runs the same way, in the worker that owns partition 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as TP
from opentelemetry.trace import Span, StatusCode
from prometheus_client import CollectorRegistry

from infra.kafka import (
    consumer_config,
    partition_lags,
    produce,
    producer_config,
    read_headers,
    records_of,
)
from infra.settings import Settings
from infra.telemetry import make_tracer, record_span, traceparent_for, traceparent_of
from infra.topics import ensure_changelogs
from policy.loader import LoadedPolicy
from processors.follow import PolicyFollower
from processors.handler import Handler, Inbound, Outbox, Record, Step, own_traceparent
from processors.metrics import LoopMetrics
from processors.restore import restore
from processors.store import Change, DiskStore, Due, Overlay, iter_changes
from schemas.codec import Codec, CodecError, Headers, InvalidEvent

log = logging.getLogger(__name__)
T = TypeVar("T")
TIMEOUT_S = 30.0


def changelog_topic(settings: Settings, component: str, store: str) -> str:
    return f"{settings.topic_prefix}{component}-{store}-changelog"


def group_id(settings: Settings, component: str) -> str:
    """The processor's consumer group (its committed offsets are its progress)."""
    return f"{settings.topic_prefix}{component}"


def checked(
    msg: Message,
    headers: Headers | None,
    codec: Codec,
    handler: Handler,
    streams: Mapping[str, str],
) -> Inbound:
    """`msg` (with its `headers`, read once) decoded and checked as an input of `handler`:
    it belongs on its topic and is keyed by its case; a CodecError when not.

    `streams` maps full topic names to the handler's stream names.
    """
    topic = msg.topic() or ""
    value = msg.value()
    event = codec.decode(value, headers)
    stream = streams[topic]
    if not isinstance(event, handler.inputs[stream]):
        raise InvalidEvent(f"{event.event_type} does not belong on the {topic} topic")
    key = msg.key()
    if key is None or key.decode("utf-8", "replace") != event.case_id:
        raise InvalidEvent(
            f"record key {key!r} differs from case_id {event.case_id!r}; "
            f"records on {topic} are keyed by case_id"
        )
    _, ts = msg.timestamp()
    return Inbound(
        topic,
        msg.partition() or 0,
        msg.offset() or 0,
        ts / 1000,
        key,
        value,
        list(headers) if headers else None,  # type: ignore[arg-type]
        stream,
        event,
    )


class Loop:
    """Runs one handler until `stop` is set; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        handler: Handler,
        instance: int = 0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.handler = handler
        self.group = group_id(settings, handler.component)
        # Stable per (processor, instance): a restarted instance fences its predecessor
        # and aborts the transaction it left open, instead of waiting for its timeout.
        self.transactional_id = f"{self.group}-{instance}"
        self.streams = {settings.topic(s): s for s in handler.inputs}
        self.changelogs = {
            s: changelog_topic(settings, handler.component, s) for s in handler.stores
        }
        self.store = (
            DiskStore(store_path(settings, self.transactional_id)) if handler.stores else None
        )
        self.policies = PolicyFollower(settings, codec) if handler.needs_policy else None
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        # Next offset to read per input partition, as committed: the offsets every
        # transaction carries (timer transactions too, for fencing).
        self._committed: dict[tuple[str, int], int] = {}
        self._owned: set[int] = set()  # store partitions restored and owned
        self.metrics = LoopMetrics(
            registry or CollectorRegistry(),
            handler.component,
            settings.topic_prefix,
            handler.timed.values(),
        )
        self.tracer = make_tracer(settings, handler.component)
        self._next_gauges = 0.0
        self.processed = 0
        self.batches = 0

    # -- set-up -------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        s = self.settings
        if self.changelogs:
            ensure_changelogs(s, list(self.changelogs.values()))
        self.producer = Producer(
            producer_config(
                s,
                **{
                    "transactional.id": self.transactional_id,
                    # A worker killed mid-transaction blocks read-committed readers of its
                    # partitions until the broker aborts it: keep that short. (A restart
                    # of the same instance aborts it at once, in init_transactions.)
                    "transaction.timeout.ms": 10_000,
                    # Committing flushes at once; a linger would only delay the commit.
                    "linger.ms": 1,
                },
            )
        )
        self.producer.init_transactions(TIMEOUT_S)
        if self.policies is not None and self.policies.catch_up(stop) is None:
            return  # stopped while waiting for a policy
        self.handler.start(self._policy(), stop)
        self.consumer = Consumer(
            consumer_config(
                s,
                self.group,
                **{
                    "enable.partition.eof": False,
                    # Co-partitioning: partition p of every input topic goes to the same
                    # worker (range assigns by partition number when counts are equal).
                    "partition.assignment.strategy": "range",
                    # librdkafka's read-ahead is most of a worker's memory; a few batches'
                    # worth is all the loop needs.
                    "queued.max.messages.kbytes": 4096,
                    "fetch.max.bytes": 8 * 1024 * 1024,
                },
            )
        )
        self.consumer.subscribe(
            list(self.streams),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    # -- the turn -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.start(stop)
        if self.consumer is None:
            self.close()
            return
        try:
            next_tick = next_sweep = next_every = time.monotonic()
            while not stop.is_set():
                if self.policies is not None and self.policies.poll():
                    self._policy_changed()
                self.handler.on_turn(self._policy())
                now = time.monotonic()
                if now >= next_tick:
                    self._tick()
                    next_tick = now + self.settings.approval_tick_s
                if now >= next_sweep:
                    self._sweep()
                    next_sweep = now + self.settings.state_sweep_s
                every_s = self.handler.every_s
                if every_s is not None and now >= next_every:
                    self._every()
                    next_every = now + every_s
                wait = max(0.0, min(next_tick, next_sweep) - time.monotonic())
                if now >= self._next_gauges:
                    self._gauges()
                    self._next_gauges = now + 1.0
                batch = self._next_batch(min(wait, self.settings.poll_timeout_s))
                if batch:
                    self._process(batch)
                else:
                    self._idle()
        finally:
            self.close()

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(10)
        if self.policies is not None:
            self.policies.close()
        if self.store is not None:
            self.store.close()
        self.handler.close()

    def _next_batch(self, timeout_s: float) -> list[Message]:
        consumer = self._live(self.consumer)
        limit = self.settings.batch_max
        # consume(n, t) waits all of t whenever fewer than n are fetched: ask for what is
        # there, else wait for one record only, then top up within the batch window.
        messages = consumer.consume(limit, 0)
        if not messages:
            messages = consumer.consume(1, timeout_s)
            if not messages:
                return []
        window_ends = time.monotonic() + self.settings.batch_wait_ms / 1000
        while len(messages) < limit:
            left = window_ends - time.monotonic()
            more = consumer.consume(limit - len(messages), max(0.0, left))
            messages.extend(more)
            if not more or left <= 0:
                break
        return messages

    def _process(self, messages: list[Message]) -> None:
        out = Outbox(self.codec, self.settings.topic_prefix, self.group)
        batch: list[Inbound] = []
        offsets: dict[tuple[str, int], int] = {}
        firsts: dict[tuple[str, int], int] = {}
        for msg in records_of(messages):
            inbound = self._decode(msg, out)
            tp = (inbound.topic, inbound.partition)
            firsts.setdefault(tp, inbound.offset)
            offsets[tp] = inbound.offset + 1
            if isinstance(inbound, Inbound):
                batch.append(inbound)
        overlay = Overlay(self.store) if self.store is not None else None
        started = time.perf_counter()
        spans = self._spans(batch, out)
        if batch:
            self.handler.handle(batch, self._step(overlay, out))
        handled = time.perf_counter()
        changes = overlay.changes() if overlay is not None else []
        # Past transaction markers too, where the consumer has already skipped them.
        for tp, position in self._positions(set(offsets)).items():
            offsets[tp] = max(offsets[tp], position)
        committed = self._transact(out, changes, offsets)
        for span in spans.values():
            if not committed:
                span.set_status(StatusCode.ERROR, "transaction aborted; the batch is read again")
            span.end()
        if committed:
            self.processed += len(messages)
            self.batches += 1
            consumed = Counter(self.streams[m.topic() or ""] for m in messages if m.error() is None)
            self.metrics.batch(consumed, handled - started, time.perf_counter() - handled)
        else:
            self._rewind(firsts)

    def _idle(self) -> None:
        """Nothing to read: commit positions that moved past transaction markers only (so
        lag reads 0 when all is done), and dead-letter refused policies."""
        moved = {
            tp: offset
            for tp, offset in self._positions().items()
            if offset > self._committed.get(tp, -1)
        }
        refused = self.policies is not None and self.policies.rejected
        if moved or refused:
            self._transact(Outbox(self.codec, self.settings.topic_prefix, self.group), [], moved)

    def _positions(self, only: set[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Where the consumer stands in each (or each of `only`) assigned partition: past
        the last record handed out, and past any transaction marker after it."""
        consumer = self._live(self.consumer)
        tps = consumer.assignment() if only is None else [TP(t, p) for t, p in only]
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in (consumer.position(tps) if tps else [])
            if tp.offset >= 0
        }

    def _spans(self, batch: Sequence[Inbound], out: Outbox) -> dict[int, Span]:
        """One span per record when tracing is on, child of the trace its record carries;
        what the record causes carries the span on (see Outbox.trace)."""
        if self.tracer is None or not batch:
            return {}
        spans = {
            id(r): record_span(
                self.tracer,
                self.handler.component,
                r.event,
                (r.topic, r.partition, r.offset),
                traceparent_of(r.headers),
            )
            for r in batch
        }
        out.trace = lambda r: (
            traceparent_for(spans[id(r)]) if id(r) in spans else own_traceparent(r)
        )
        return spans

    def _gauges(self) -> None:
        """Lag per partition (cached watermarks: no broker round trip), the policy in
        force, and the size of the state stores."""
        consumer = self.consumer
        if consumer is not None:
            self.metrics.lags(partition_lags(consumer, self._positions()))
        policy = self._policy()
        self.metrics.policy_in_force(policy.version if policy is not None else None)
        if self.store is not None:
            self.metrics.stores({name: self.store.count(name) for name in self.changelogs})
            within_hour = _now_ms() + 3_600_000
            for store, what in self.handler.timed.items():
                pending = self.store.count_due(store)
                self.metrics.pending(what, pending, self.store.count_due(store, within_hour))

    def _decode(self, msg: Message, out: Outbox) -> Inbound | Record:
        """The record decoded and checked, or dead-lettered (then returned undecoded)."""
        headers = None
        try:
            headers = read_headers(msg)
            return checked(msg, headers, self.codec, self.handler, self.streams)
        except CodecError as exc:
            _, ts = msg.timestamp()
            record = Record(
                msg.topic() or "",
                msg.partition() or 0,
                msg.offset() or 0,
                ts / 1000,
                msg.key(),
                msg.value(),
                list(headers) if headers else None,  # type: ignore[arg-type]
            )
            log.warning("dead-lettering %s: %s: %s", record.where, type(exc).__name__, exc)
            out.reject(record, exc)
            return record

    def _policy(self) -> LoadedPolicy | None:
        return self.policies.latest if self.policies is not None else None

    def _step(self, overlay: Overlay | None, out: Outbox) -> Step:
        return Step(
            state=overlay if overlay is not None else _NoState(),
            out=out,
            policy=self._policy(),
            now=datetime.now(UTC),
            partitions=self.settings.partitions,
            policies=self.policies.versions if self.policies is not None else {},
        )

    # -- timers and retention -------------------------------------------------------------

    def _tick(self) -> None:
        """Show the handler the entries whose timer has come."""
        self._show_timed(_now_ms(), 1000, self.handler.on_due)

    def _policy_changed(self) -> None:
        """Show the handler every timed entry (an open approval item is one): the policy
        now in force may end some of them before anyone acts on them."""
        self._show_timed(_FOREVER_MS, 1_000_000, self.handler.on_policy)

    def _show_timed(
        self, before_ms: int, limit: int, hook: Callable[[Sequence[Due], Step], None]
    ) -> None:
        """`hook` with the owned entries timed before `before_ms`, in one transaction."""
        if self.store is None or not self._owned:
            return
        due = [d for d in self.store.due(before_ms, limit) if d.partition in self._owned]
        if not due:
            return
        out = Outbox(self.codec, self.settings.topic_prefix, self.group)
        overlay = Overlay(self.store)
        hook(due, self._step(overlay, out))
        changes = overlay.changes()
        if out.records or changes:
            self._transact(out, changes, dict(self._committed))

    def _every(self) -> None:
        """The handler's periodic work (`Handler.every`): one worker does it, the owner of
        partition 0, in a transaction with the offsets it owns."""
        if 0 not in self._owned:
            return
        out = Outbox(self.codec, self.settings.topic_prefix, self.group)
        overlay = Overlay(self.store) if self.store is not None else None
        self.handler.every(self._step(overlay, out))
        changes = overlay.changes() if overlay is not None else []
        if out.records or changes:
            self._transact(out, changes, dict(self._committed))

    def _sweep(self) -> None:
        """Delete entries past their retention, with their tombstones."""
        if self.store is None or not self._owned:
            return
        expired = [k for k in self.store.expired(_now_ms(), limit=5000) if k[1] in self._owned]
        if expired:
            changes = [Change(s, p, k, None) for s, p, k in expired]
            out = Outbox(self.codec, self.settings.topic_prefix, self.group)
            if self._transact(out, changes, dict(self._committed)):
                log.info("retention: %d state entries removed", len(changes))

    # -- the transaction ----------------------------------------------------------------

    def _transact(
        self,
        out: Outbox,
        changes: Sequence[Change],
        offsets: dict[tuple[str, int], int],
    ) -> bool:
        """Produce `out`, the changelog of `changes` and `offsets` in one transaction.

        True when it committed (then the store takes the changes); False when it had to
        be aborted (nothing of it is visible; the caller rewinds).
        """
        producer = self._live(self.producer)
        if self.policies is not None:
            for record, error in self.policies.rejected:
                out.reject(record, error)
        try:
            producer.begin_transaction()
            for r in out.records:
                produce(producer, r.topic, r.key, r.value, r.headers, r.partition)
            for store, partition, key, value in iter_changes(changes):
                produce(producer, self.changelogs[store], key, value, None, partition)
            if offsets:
                consumer = self._live(self.consumer)
                _retry(
                    lambda: producer.send_offsets_to_transaction(
                        [TP(t, p, o) for (t, p), o in offsets.items()],
                        consumer.consumer_group_metadata(),
                        TIMEOUT_S,
                    )
                )
            if self.settings.txn_hold_ms:  # fault tests: a kill lands inside the transaction
                producer.flush(TIMEOUT_S)
                time.sleep(self.settings.txn_hold_ms / 1000)
            _retry(lambda: producer.commit_transaction(TIMEOUT_S))
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise  # fatal: fenced, or the broker refused for good; the process ends
            log.warning("transaction aborted (%s); the batch is read again", error)
            producer.abort_transaction(TIMEOUT_S)
            self.metrics.aborted()
            return False
        if self.policies is not None:
            self.policies.rejected.clear()
        if self.store is not None and changes:
            self.store.apply(changes)
        self._committed.update(offsets)
        self.metrics.committed(out)
        return True

    def _rewind(self, firsts: dict[tuple[str, int], int]) -> None:
        consumer = self._live(self.consumer)
        for (topic, partition), offset in firsts.items():
            consumer.seek(TP(topic, partition, offset))

    # -- rebalances -----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TP]) -> None:
        """Restore the state of the newly assigned partitions before any record of them is
        handled, and note where each starts (its committed offset)."""
        started = time.monotonic()
        fresh = sorted({tp.partition for tp in partitions} - self._owned)
        restored = 0
        if self.store is not None and fresh:
            restored = restore(self.settings, self.store, self.changelogs, fresh)
        self._owned |= set(fresh)
        for tp in consumer.committed(partitions, timeout=TIMEOUT_S):
            if tp.offset >= 0:
                self._committed[(tp.topic, tp.partition)] = tp.offset
        log.info(
            "assigned %s; restored %d state records in %.1fs",
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions),
            restored,
            time.monotonic() - started,
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TP]) -> None:
        """Forget what this worker no longer owns: another one restores it."""
        for tp in partitions:
            self._committed.pop((tp.topic, tp.partition), None)
        self.metrics.forget_lag((tp.topic, tp.partition) for tp in partitions)
        for p in {tp.partition for tp in partitions}:
            self._owned.discard(p)
            if self.store is not None:
                for store in self.changelogs:
                    self.store.drop(store, p)
        log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    @staticmethod
    def _live(client: T | None) -> T:
        if client is None:
            raise RuntimeError("the loop is not started")
        return client


class _NoState:
    """The state of a handler that declares no stores: any use is a bug."""

    def _refuse(self, *_: object, **__: object) -> None:
        raise RuntimeError("this handler declared no stores")

    get = entry = put = delete = _refuse  # type: ignore[assignment]


def _retry(call: Callable[[], None], attempts: int = 5) -> None:
    """Retry a transactional call the client calls retriable (a timeout, say)."""
    for attempt in range(attempts):
        try:
            call()
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


_FOREVER_MS = 2**62  # later than any timer


def _now_ms() -> int:
    return int(time.time() * 1000)


def store_path(settings: Settings, transactional_id: str) -> Path:
    """The process's local copy of its state (a cache: rebuilt from the changelog)."""
    return settings.home / "state" / f"{transactional_id}.sqlite"
