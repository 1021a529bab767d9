"""The read-model loop: consume a batch, decode it once, drop events already recorded, write
every read model's rows and the offsets they came from in one PostgreSQL transaction, repeat.

Exactly-once into PostgreSQL comes from the offsets table, not from Kafka's committed offsets:
on assignment the consumer seeks to ``projection_offsets.next_offset``, so rows and position
can never disagree after a crash. Kafka offsets are also committed (asynchronously, after the
transaction) purely so lag tools see progress.

Reading and writing overlap by one batch: while one thread writes batch N in its
transaction (mostly waiting for PostgreSQL, which runs on another core), the loop consumes
and decodes batch N+1. Everything that depends on the database (which events are new, the
audit chain heads, the rows' merge) happens inside batch N+1's own transaction, which starts
only once batch N's has committed, so the overlap changes no result.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from opentelemetry.trace import Span, Tracer
from psycopg.pq import TransactionStatus

from infra.deadletter import dead_letter
from infra.kafka import partition_lags, position_of, read_headers, records_of
from infra.settings import Settings
from infra.telemetry import record_span, trace_id_of, traceparent_of
from projections.anchors import AnchorPublisher
from projections.envelope import Admitted, Envelope, storable
from projections.metrics import ReadModelMetrics
from projections.staging import Load
from schemas.codec import Codec, CodecError, Headers, InvalidEvent

log = logging.getLogger(__name__)
INTRANS, INERROR = TransactionStatus.INTRANS, TransactionStatus.INERROR


class Projection(Protocol):
    """A read model: how a batch of new events becomes rows (it ignores other types)."""

    name: str

    def prepare(self, cur: psycopg.Cursor) -> None:
        """Set up what the connection needs before the first batch (staging tables)."""
        ...

    def plan(self, batch: Sequence[Envelope]) -> Any:
        """The rows ``batch`` asks for if every event in it is new: Python only, no
        database, so that it runs while the batch before is still being written."""
        ...

    def apply(self, load: Load, plan: Any) -> None:
        """Write what ``plan`` made of the batch's new events (``load`` says how)."""
        ...


class Deduplicator(Protocol):
    """Keeps only events not recorded yet; the audit log plays this part."""

    # Topics whose records are kept whole (``Envelope.raw``): a collision found there is
    # dead-lettered with its bytes.
    checked_topics: frozenset[str]

    def unique(self, batch: Sequence[Envelope]) -> list[Envelope]:
        """The first occurrence of each event in the batch."""
        ...

    def fresh(self, cur: psycopg.Cursor, batch: Sequence[Envelope]) -> Admitted:
        """The events of ``batch`` (unique) that are not recorded yet, and those that
        collide with a recorded one (reads only: in a pipeline, its statements are the
        transaction's one round trip before the writes)."""
        ...

    def take_heads(self) -> dict[tuple[str, int], tuple[int, str]]:
        """The audit chains' heads the last ``apply`` left (for the anchors)."""
        ...


# Batches between two garbage collections while a runner runs (see start).
COLLECT_EVERY = 20
# Batches of at most this many events are written inline and pipelined (see
# projections.staging): two round trips per transaction, no temporary table. Larger ones go
# by COPY, whose merges look rows up by key: an inline merge scans its rows once per
# stored row it changes, which is nothing at this size and too much at a replay's.
INLINE_EVENTS = 500
STORE_OFFSETS = """
INSERT INTO projection_offsets (consumer, topic, partition, next_offset)
SELECT %s, topic, partition, next_offset
FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS o (topic, partition, next_offset)
ON CONFLICT (consumer, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = now()
"""


@dataclass(frozen=True)
class Batch:
    """What one consume returned, decoded: each event once, the position after each
    partition, and every projection's plan for the events."""

    envelopes: list[Envelope]
    next_offsets: dict[tuple[str, int], int]
    records: int
    decoded: int  # events decoded, in-batch duplicates included
    plans: list[Any]
    consumed: dict[str, int]  # records read, by topic (for the metrics)
    spans: list[Span]  # one per event when tracing is on, ended once the batch commits


@dataclass(frozen=True)
class Written:
    """What a batch's committed transaction wrote."""

    fresh: dict[str, int]  # new events, by topic
    seconds: float  # BEGIN to COMMIT
    heads: dict[tuple[str, int], tuple[int, str]]  # audit chains' heads it left
    collisions: int  # events dead-lettered as colliding with recorded ones


def group_id(settings: Settings, name: str) -> str:
    """The Kafka consumer group of a projection runner (dead letters name it too)."""
    return f"{settings.topic_prefix}projection.{name}"


class ProjectionRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        codec: Codec,
        name: str,
        topics: Sequence[str],
        dedupe: Deduplicator,
        projections: Sequence[Projection],
        conn: psycopg.Connection,
        consumer: Consumer,
        producer: Producer,
        batch_size: int = 5000,
        emit_dead_letters: bool = True,
        poll_timeout_s: float = 0.25,
        reconnect: Callable[[], psycopg.Connection] | None = None,
        metrics: ReadModelMetrics | None = None,
        tracer: Tracer | None = None,
        anchors: AnchorPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.topics = tuple(topics)
        self.dedupe = dedupe
        self.projections = tuple(projections)
        self.conn = conn
        self.consumer = consumer
        self.producer = producer
        self.batch_size = batch_size
        # A replay re-reads records the live run already dead-lettered: it skips them
        # without producing the same dead letters again.
        self.emit_dead_letters = emit_dead_letters
        self.poll_timeout_s = poll_timeout_s
        # How to open a new connection when PostgreSQL went away (restart, failover);
        # without it a lost connection ends run() with the error.
        self.reconnect = reconnect
        self.metrics = metrics
        self.tracer = tracer
        # Publishes the audit chains' heads as batches commit (the live worker's; a replay
        # rebuilds elsewhere and anchors nothing).
        self.anchors = anchors
        self._next_gauges = 0.0
        # Offsets are stored per projection; dead letters name the consumer group.
        self.consumer_name = f"projection.{name}"
        self.group_id = group_id(settings, name)
        self.processed = 0
        self.dead_lettered = 0
        self.duplicates = 0
        # One thread writes batches, one at a time; _inflight is the batch it is writing.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-writer")
        self._inflight: Future[tuple[Batch, Written]] | None = None
        # The position stored (or being stored) per partition: when the consumer has moved
        # past transaction markers only, an offsets-only write catches up (lag reads 0).
        self._positions: dict[tuple[str, int], int] = {}
        self._next_idle_check = 0.0
        self._batches = 0
        self._collecting = gc.isenabled()

    def start(self) -> None:
        # The cyclic garbage collector, left to itself, walks the batches' tens of
        # thousands of young objects again and again while they are built, though they
        # hold no cycles and reference counting frees them: measured here, that took a
        # third of the replay's Python time. It runs every COLLECT_EVERY batches instead
        # (step), and as it was once the runner closes.
        self._collecting = gc.isenabled()
        gc.disable()
        self._prepare()
        topics = [self.settings.topic(t) for t in self.topics]
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _prepare(self) -> None:
        """Ready a new connection: session settings and every projection's staging tables,
        committed on their own so that a batch rolled back later keeps them. The runner
        begins and commits every transaction itself (autocommit outside them), which a
        pipelined transaction needs."""
        self.conn.autocommit = True
        with self.conn.transaction(), self.conn.cursor() as cur:
            # Each batch's merge statements are planned afresh with new row counts; JIT
            # compiling them (PostgreSQL's default above a cost threshold that a big batch
            # passes) costs more than running them.
            cur.execute("SET jit = off")
            for projection in self.projections:
                projection.prepare(cur)

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.is_set():
                try:
                    self.step()
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    if self.reconnect is None:
                        raise
                    log.warning("PostgreSQL connection lost (%s); reconnecting", exc)
                    self._recover(stop, self.reconnect)
            # Stopping: the batch being written commits (or fails) before the consumer goes.
            self.drain()
        finally:
            self.close()

    def close(self) -> None:
        """Wait for the writer (its outcome no longer matters), then close the clients."""
        if self._inflight is not None:
            self._inflight.exception()
            self._inflight = None
        self._writer.shutdown(wait=True)
        self.consumer.close()
        if self.anchors is not None:
            self.anchors.close()
        self.producer.flush(10)
        if self._collecting:
            gc.enable()

    def _recover(
        self,
        stop: threading.Event,
        reconnect: Callable[[], psycopg.Connection],
        max_wait_s: float = 5.0,
    ) -> None:
        """Reconnect, then rewind every assigned partition to the offset stored beside the
        rows: the batch in hand was rolled back (or, if the commit's answer was lost, did
        commit), and only the database knows which, so it is read again from there."""
        wait = 0.2
        while not stop.is_set():
            try:
                self.conn.close()
                self.conn = reconnect()
                self._prepare()
                self._rewind()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("PostgreSQL still unavailable (%s); retrying in %.1fs", exc, wait)
                stop.wait(wait)
                wait = min(wait * 2, max_wait_s)
                continue
            log.info("PostgreSQL connection restored; resuming from the stored offsets")
            return

    def _rewind(self) -> None:
        stored = self._stored_offsets()
        # assign() with explicit offsets, not seek(): it also covers a partition whose
        # fetch had not started yet, where seek() fails with an erroneous-state error.
        self.consumer.assign(
            [
                TopicPartition(
                    tp.topic, tp.partition, stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
                )
                for tp in self.consumer.assignment()
            ]
        )

    def _stored_offsets(self) -> dict[tuple[str, int], int]:
        rows = self.conn.execute(
            "SELECT topic, partition, next_offset FROM projection_offsets WHERE consumer = %s",
            (self.consumer_name,),
        ).fetchall()
        self.conn.commit()
        return {(t, p): o for t, p, o in rows}

    def step(self) -> int:
        """Consume and decode one batch, then hand it to the writer once the previous batch
        has committed; returns how many records it covered. Errors of the previous batch's
        transaction are raised here; ``drain`` waits for the last one."""
        batch = self._read()
        self.drain()
        self._gauges()
        if self.anchors is not None:
            self.anchors.publish_due()
        if batch is None:
            return 0
        self._inflight = self._writer.submit(self._write, batch)
        self._batches += 1
        if self._batches % COLLECT_EVERY == 0:
            gc.collect()
        return batch.records

    def drain(self) -> None:
        """Wait until the batch being written has committed; raise its error if it failed."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        try:
            batch, written = inflight.result()
        except BaseException:
            if self.metrics is not None:
                self.metrics.failed()
            raise
        fresh = sum(written.fresh.values())
        self._positions.update(batch.next_offsets)
        self.processed += fresh
        self.dead_lettered += written.collisions
        duplicates = batch.decoded - fresh - written.collisions
        self.duplicates += duplicates
        if self.anchors is not None:
            self.anchors.note(written.heads)
        if self.metrics is not None:
            self.metrics.committed(batch.consumed, written.fresh, duplicates, written.seconds)
        for span in batch.spans:
            span.end()
        # For lag tools only: the position that counts is the one stored with the rows.
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()],
            asynchronous=True,
        )

    def _read(self) -> Batch | None:
        """Consume what is there and decode it; undecodable records are dead-lettered."""
        # What is already fetched, else wait for the first record only. consume(n, timeout)
        # alone waits the whole timeout whenever fewer than n records are ready, which put
        # up to poll_timeout_s (250 ms) on every event at low rates; under a backlog the
        # batch still fills to batch_size, so throughput is unchanged.
        messages = self.consumer.consume(self.batch_size, 0)
        if not messages:
            messages = self.consumer.consume(1, self.poll_timeout_s)
            if not messages:
                return self._past_markers()
            messages += self.consumer.consume(self.batch_size - 1, 0)
        envelopes: list[Envelope] = []
        spans: list[Span] = []
        dead = 0
        next_offsets: dict[tuple[str, int], int] = {}
        for msg in records_of(messages):
            topic, partition, offset = position_of(msg)
            next_offsets[(topic, partition)] = offset + 1
            headers: Headers | None = None
            try:
                headers = read_headers(msg)
                event = self.codec.decode(msg.value(), headers)
                if self.settings.topic(event.topic) != topic:
                    # Each event type has its topic (architecture §3); one found elsewhere was
                    # put there by mistake or malice and no processor acts on it there.
                    raise InvalidEvent(
                        f"{event.event_type} belongs on {self.settings.topic(event.topic)}, "
                        f"not on {topic}"
                    )
            except CodecError as exc:
                self._dead_letter(topic, partition, offset, msg.key(), msg.value(), headers, exc)
                dead += 1
                continue
            traceparent = traceparent_of(headers)
            kept = topic in self.dedupe.checked_topics
            envelopes.append(
                storable(
                    Envelope(
                        topic,
                        partition,
                        offset,
                        msg.key(),
                        event,
                        trace_id_of(traceparent),
                        msg.value() if kept else None,
                        headers if kept else None,
                    )
                )
            )
            if self.tracer is not None:
                # From the record's read to the commit of the batch that wrote it.
                spans.append(
                    record_span(
                        self.tracer, "readmodels", event, (topic, partition, offset), traceparent
                    )
                )
        if dead and self.emit_dead_letters:
            # Dead letters must be durable before the offsets that skip them are.
            self._flush_dead_letters()
        if not next_offsets:
            return None
        # Past the transaction markers the consumer has already skipped, too: the
        # processors write in transactions, and a marker is an offset with no record.
        for tp, position in self._consumer_positions(set(next_offsets)).items():
            next_offsets[tp] = max(next_offsets[tp], position)
        unique = self.dedupe.unique(envelopes)
        plans = [projection.plan(unique) for projection in self.projections]
        consumed = Counter(cast(str, m.topic()) for m in messages if m.error() is None)
        return Batch(
            unique, next_offsets, len(messages), len(envelopes), plans, dict(consumed), spans
        )

    def _gauges(self) -> None:
        """Lag per partition from the stored positions and the cached high watermarks (no
        broker round trip), at most once a second."""
        now = time.monotonic()
        if self.metrics is None or now < self._next_gauges:
            return
        self._next_gauges = now + 1.0
        self.metrics.lags(partition_lags(self.consumer, self._positions))

    def _past_markers(self) -> Batch | None:
        """Idle: an offsets-only batch for partitions whose position moved past trailing
        transaction markers since the last write (checked at most twice a second)."""
        now = time.monotonic()
        if now < self._next_idle_check:
            return None
        self._next_idle_check = now + 0.5
        moved = {
            tp: position
            for tp, position in self._consumer_positions(None).items()
            if position > self._positions.get(tp, -1)
        }
        if not moved:
            return None
        plans = [projection.plan([]) for projection in self.projections]
        return Batch([], moved, 0, 0, plans, {}, [])

    def _consumer_positions(self, only: set[tuple[str, int]] | None) -> dict[tuple[str, int], int]:
        tps = (
            self.consumer.assignment() if only is None else [TopicPartition(t, p) for t, p in only]
        )
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in (self.consumer.position(tps) if tps else [])
            if tp.offset >= 0
        }

    def _write(self, batch: Batch) -> tuple[Batch, Written]:
        """One transaction: the new events' rows in every read model and the offsets they
        came from. Returns the batch and what of it was new."""
        started = time.perf_counter()
        envelopes = batch.envelopes
        inline = len(envelopes) <= INLINE_EVENTS
        self.dedupe.take_heads()  # whatever a failed transaction left
        collisions: list[tuple[Envelope, Exception]] = []
        with self._transaction(pipelined=inline) as cur:
            fresh: list[Envelope] = []
            if envelopes:
                admitted = self.dedupe.fresh(cur, envelopes)
                fresh, collisions = admitted.fresh, admitted.collisions
            if collisions:
                self._set_aside(collisions)
            plans = batch.plans
            if len(fresh) != len(envelopes):
                # Some were recorded already (a redelivery): the plans assumed they were
                # all new, so they are made again from the new ones only.
                plans = [projection.plan(fresh) for projection in self.projections]
            # Step 2: every read model sees the same new events in the same transaction,
            # so they can never disagree about what has been applied.
            if fresh:
                load = Load(cur, inline)
                for projection, plan in zip(self.projections, plans, strict=True):
                    projection.apply(load, plan)
            positions = batch.next_offsets.items()
            cur.execute(
                STORE_OFFSETS,
                (
                    self.consumer_name,
                    [t for (t, _), _ in positions],
                    [p for (_, p), _ in positions],
                    [o for _, o in positions],
                ),
            )
        return batch, Written(
            dict(Counter(e.topic for e in fresh)),
            time.perf_counter() - started,
            self.dedupe.take_heads(),
            len(collisions),
        )

    def _set_aside(self, collisions: list[tuple[Envelope, Exception]]) -> None:
        """Dead-letter the events that collide with recorded ones, durably before the
        transaction that skips them commits (it is open while this waits)."""
        for env, exc in collisions:
            self._dead_letter(
                env.topic, env.partition, env.offset, env.key, env.raw, env.headers, exc, False
            )
        if self.emit_dead_letters:
            self._flush_dead_letters()

    @contextlib.contextmanager
    def _transaction(self, pipelined: bool) -> Iterator[psycopg.Cursor]:
        """A transaction, committed when the block ends without error, else rolled back.

        Pipelined: BEGIN, the statements and COMMIT go out without waiting for one another;
        the server answers when the block reads a result (the deduplication) and at the
        commit, which waits for the disk (synchronous_commit) as any commit does. Nothing
        in the block may COPY.
        """
        conn = self.conn
        if not pipelined:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
            return
        try:
            with conn.pipeline() as pipeline, conn.cursor() as cur:
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")
                pipeline.sync()
        except BaseException:
            # A failed statement left the transaction open and aborted (its COMMIT was
            # skipped); a lost connection has none left to end.
            if conn.info.transaction_status in (INTRANS, INERROR):
                with contextlib.suppress(psycopg.OperationalError, psycopg.InterfaceError):
                    conn.execute("ROLLBACK")
            raise

    def _flush_dead_letters(self) -> None:
        remaining = self.producer.flush(30)
        if remaining:
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"{remaining} dead letters not delivered")
            )

    def _dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        exc: Exception,
        counted: bool = True,
    ) -> None:
        """Produce the dead letter of a record (``counted``: here; the writer's collisions
        are counted by ``drain``, on the loop's thread)."""
        if counted:
            self.dead_lettered += 1
        if not self.emit_dead_letters:
            return
        log.warning("dead-lettering %s[%d]@%d: %s", topic, partition, offset, exc)
        if self.metrics is not None:
            self.metrics.dead_letter(type(exc).__name__)
        event = dead_letter(
            consumer=self.group_id,
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            headers=headers,
            error=exc,
        )
        payload, hdrs = self.codec.encode(event)
        wire_headers: list[Any] = hdrs  # confluent's stub wants a wider element type
        self.producer.produce(
            self.settings.topic("deadletter"), key=key, value=payload, headers=wire_headers
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Let the batch being written commit before its partitions go to another worker,
        which starts from the offsets stored with the rows."""
        self.drain()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Seek each assigned partition to the position stored beside the rows."""
        # The batch being written may hold the position of these partitions.
        self.drain()
        stored = self._stored_offsets()
        self._positions.update(stored)
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
