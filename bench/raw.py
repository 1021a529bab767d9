"""The ceiling: plain confluent-kafka loops over the same records, no decoding, no database."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from infra.kafka import consumer_config, position_of, producer_config, records_of
from infra.settings import Settings
from infra.topics import INTAKE

BATCH = 10_000


def next_batch(consumer: Consumer, size: int, timeout_s: float) -> list[Message]:
    """What is already fetched (up to ``size``), else wait up to ``timeout_s`` for one.

    ``consume(size, timeout)`` alone waits the whole timeout whenever fewer than ``size``
    records are ready (librdkafka fills the batch or times out): a latency floor at low
    rates, and a stall on the last batch of a finite run.
    """
    batch = consumer.consume(size, 0)
    if not batch:
        batch = consumer.consume(1, timeout_s)
        if batch:
            batch += consumer.consume(size - 1, 0)
    return batch


def read_to_end(settings: Settings, topic: str) -> list[Message]:
    """Every record of ``topic`` up to its end now (manual assignment, no group)."""
    consumer = Consumer(consumer_config(settings, f"bench-plain-read-{uuid.uuid4()}"))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in meta.partitions
        }
        consumer.assign(tps)
        out: list[Message] = []
        deadline = _until(120)
        while True:
            _check(deadline, len(out), sum(ends.values()))
            out += records_of(next_batch(consumer, 5000, 0.2))
            # Positions, not the last offset seen: they also step over transaction markers.
            at = {tp.partition: tp.offset for tp in consumer.position(tps)}
            if all(at[p] >= end for p, end in ends.items() if end > 0):
                return out
    finally:
        consumer.close()


def _consumer(settings: Settings, topic: str) -> Consumer:
    consumer = Consumer(
        consumer_config(settings, f"bench-raw-{uuid.uuid4()}", **{"fetch.wait.max.ms": 10})
    )
    consumer.subscribe([topic])
    return consumer


@dataclass(frozen=True)
class Speed:
    """One raw run: records/s, and CPU the bench process spent per record (librdkafka's
    threads included) over the same span."""

    rate: float
    cpu_ms: float


class _Clock:
    """Rate from the end of the first batch to the last record: the group join and the
    first fetch are not the loop's speed, so the first batch only starts the clock.
    (A run so small that one batch held everything is timed from the subscription.)"""

    def __init__(self) -> None:
        self.subscribed = time.perf_counter()
        self.subscribed_cpu = time.process_time()
        self.started = 0.0
        self.started_cpu = 0.0
        self.first = 0
        self.counted = 0

    def tick(self, n: int) -> None:
        if not self.started:
            self.started, self.started_cpu = time.perf_counter(), time.process_time()
            self.first = n
        else:
            self.counted += n

    def speed(self) -> Speed:
        wall, cpu = time.perf_counter(), time.process_time()
        if not self.counted:
            return Speed(
                self.first / (wall - self.subscribed),
                (cpu - self.subscribed_cpu) * 1000 / max(1, self.first),
            )
        return Speed(
            self.counted / (wall - self.started),
            (cpu - self.started_cpu) * 1000 / self.counted,
        )


def _until(timeout_s: float) -> float:
    return time.monotonic() + timeout_s


def _check(deadline: float, seen: int, expect: int) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{seen} of {expect} records read before the deadline")


def raw_consume(settings: Settings, expect: int, timeout_s: float = 300) -> Speed:
    """Consume-only rate of the intake topic (where the pipeline's cases arrive), records/s."""
    consumer = _consumer(settings, settings.topic(INTAKE))
    seen, clock, deadline = 0, _Clock(), _until(timeout_s)
    try:
        while seen < expect:
            _check(deadline, seen, expect)
            batch = records_of(next_batch(consumer, BATCH, 1.0))
            if batch:
                clock.tick(len(batch))
                seen += len(batch)
    finally:
        consumer.close()
    return clock.speed()


def raw_passthrough(
    settings: Settings, expect: int, out_topic: str, timeout_s: float = 300
) -> Speed:
    """consume → produce → flush → commit per batch, records/s.

    The flush before the (asynchronous) commit makes it at-least-once, as the processors
    are: a crash never commits an input whose output was not acknowledged.
    """
    consumer = _consumer(settings, settings.topic(INTAKE))
    producer = Producer(producer_config(settings))
    seen, clock, deadline = 0, _Clock(), _until(timeout_s)
    try:
        while seen < expect:
            _check(deadline, seen, expect)
            batch = records_of(next_batch(consumer, BATCH, 1.0))
            if not batch:
                continue
            offsets: dict[tuple[str, int], int] = {}
            for msg in batch:
                while True:
                    try:
                        producer.produce(
                            out_topic, key=msg.key(), value=msg.value(), headers=msg.headers()
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                topic, partition, offset = position_of(msg)
                offsets[(topic, partition)] = offset + 1
            if producer.flush(60):
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=True,
            )
            seen += len(batch)
            clock.tick(len(batch))
    finally:
        consumer.close()
    return clock.speed()
