"""The ceiling: plain confluent-kafka loops over the same records, no decoding, no database."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from infra.kafka import consumer_config, producer_config
from infra.settings import Settings


def _consumer(settings: Settings, topic: str) -> Consumer:
    consumer = Consumer(
        consumer_config(settings, f"bench-raw-{uuid.uuid4()}", **{"fetch.wait.max.ms": 10})
    )
    consumer.subscribe([topic])
    return consumer


def raw_consume(settings: Settings, expect: int) -> float:
    """Consume-only rate of ``cases``, records/s (from the first record to the last)."""
    consumer = _consumer(settings, settings.topic("cases"))
    seen, started = 0, 0.0
    try:
        while seen < expect:
            batch = consumer.consume(10000, 1.0)
            if batch and not started:
                started = time.perf_counter()
            seen += sum(1 for m in batch if m.error() is None)
    finally:
        consumer.close()
    return seen / (time.perf_counter() - started)


def raw_passthrough(settings: Settings, expect: int, out_topic: str) -> float:
    """consume → produce → commit per batch (asynchronously): records/s."""
    consumer = _consumer(settings, settings.topic("cases"))
    producer = Producer(producer_config(settings))
    seen, started = 0, 0.0
    try:
        while seen < expect:
            batch = consumer.consume(10000, 1.0)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            offsets: dict[tuple[str, int], int] = {}
            for msg in batch:
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(str(msg.error()))
                while True:
                    try:
                        producer.produce(
                            out_topic, key=msg.key(), value=msg.value(), headers=msg.headers()
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
                seen += 1
            producer.poll(0)
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=True,
            )
        producer.flush(120)
    finally:
        consumer.close()
    return seen / (time.perf_counter() - started)
