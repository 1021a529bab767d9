"""Kafka client configuration: one place decides durability and batching defaults."""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from infra import kafka_auth
from infra.settings import Settings
from schemas.codec import Headers, UndecodableRecord

log = logging.getLogger(__name__)


def common_config(settings: Settings) -> dict[str, Any]:
    """Where the brokers are and how to authenticate (infra.kafka_auth): every client's base."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        **kafka_auth.resolve(settings).librdkafka(),
    }


# How aiokafka names the librdkafka properties `common_config` sets; the TLS files go
# into one SSL context instead.
_AIOKAFKA_NAMES = {
    "bootstrap.servers": "bootstrap_servers",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
}
_AIOKAFKA_TLS = {
    "ssl.ca.location": "cafile",
    "ssl.certificate.location": "certfile",
    "ssl.key.location": "keyfile",
    "ssl.key.password": "password",
}


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """`common_config` for aiokafka (pure-Python) clients, translated from it: the same
    brokers, protocol, credentials and TLS files."""
    from aiokafka.helpers import create_ssl_context  # only the few aiokafka users pay

    common = common_config(settings)
    unknown = common.keys() - _AIOKAFKA_NAMES.keys() - _AIOKAFKA_TLS.keys()
    if unknown:  # a property added to common_config must be translated here too
        raise ValueError(f"no aiokafka name for {', '.join(sorted(unknown))}")
    conf = {_AIOKAFKA_NAMES[k]: v for k, v in common.items() if k in _AIOKAFKA_NAMES}
    if kafka_auth.resolve(settings).tls:
        files = {_AIOKAFKA_TLS[k]: v for k, v in common.items() if k in _AIOKAFKA_TLS}
        conf["ssl_context"] = create_ssl_context(**files)
    return conf


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all producer that batches: durability is never traded for speed."""
    return {
        **common_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        # Java's key hash (its default partitioner's). librdkafka's default (CRC32) would put
        # a case's records from this producer and from the processors in different
        # partitions, and co-partitioned processors would never see them together.
        "partitioner": "murmur2_random",
        **overrides,
    }


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Manual offsets (the caller stores them with its results), committed reads only."""
    return {
        **common_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "fetch.wait.max.ms": 50,
        **overrides,
    }


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, **overrides))


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))


def partition_lags(
    consumer: Consumer, positions: Mapping[tuple[str, int], int]
) -> list[tuple[str, int, int]]:
    """(topic, partition, lag) for each position: the high watermark the consumer last
    fetched (cached, no broker round trip) minus the position, never below 0; partitions
    with no fetched watermark yet are left out."""
    lags = []
    for (topic, partition), position in positions.items():
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high >= 0:
            lags.append((topic, partition, max(0, high - position)))
    return lags


def records_of(messages: Iterable[Message]) -> list[Message]:
    """The records of a `consume()` batch: partition-end notices are skipped, any other
    error is raised (a consumer never goes on past a record it could not read)."""
    kept = []
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(err)
        kept.append(msg)
    return kept


def position_of(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a record without an error, where all three are set."""
    return cast(str, msg.topic()), cast(int, msg.partition()), cast(int, msg.offset())


def read_headers(msg: Message) -> Headers | None:
    """The record's headers; UndecodableRecord when they cannot be read.

    A non-conforming producer can write a header name that is not UTF-8. confluent-kafka
    then returns the headers with a NULL name and a Python error left pending, which a
    direct `msg.headers()` call in a hot loop (a call site CPython has specialised) does
    not raise: it surfaces later in unrelated code. Called through `methodcaller`, the
    result is checked at once, so the failure surfaces here and means "this record is
    undecodable" instead of crashing the consumer at that offset on every restart. Read
    each message's headers through here, once.
    """
    try:
        headers: Headers | None = _HEADERS(msg)
    except (SystemError, UnicodeError):
        raise UndecodableRecord(
            "record headers cannot be read: a header name is not UTF-8"
        ) from None
    return headers


_HEADERS = operator.methodcaller("headers")


def murmur2(data: bytes) -> int:
    """Kafka's key hash (32-bit murmur2, seed 0x9747b28c), as Java's default partitioner
    and librdkafka's `murmur2_random` compute it."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = 0x9747B28C ^ length
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands in with the partitioner casegate uses."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None = None,
    partition: int | None = None,
) -> None:
    """Queue one record; when librdkafka's local queue is full, let deliveries drain and
    try again (never drop, never block forever on a dead broker: delivery times out)."""
    extra = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, **extra)  # type: ignore[arg-type]
            return
        except BufferError:
            producer.poll(0.05)
