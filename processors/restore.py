"""Rebuilding a processor's local state from its changelog topics, partition by partition.

Read committed, from the beginning to where each partition ends when the restore starts:
records of transactions that were aborted are never restored, and a transaction a dead
worker left open holds the end back until the broker aborts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, Consumer
from confluent_kafka import TopicPartition as TP

from infra.kafka import consumer_config, records_of
from infra.settings import Settings
from processors.store import DiskStore

log = logging.getLogger(__name__)
TIMEOUT_S = 30.0


def restore(
    settings: Settings, store: DiskStore, changelogs: dict[str, str], partitions: list[int]
) -> int:
    """Rebuild `partitions` of every store from its changelog; how many records were read."""
    reader = Consumer(
        consumer_config(
            settings,
            f"{settings.topic_prefix}restore",
            **{"enable.partition.eof": False, "queued.max.messages.kbytes": 8192},
        )
    )
    try:
        return sum(
            store.restore(name, p, _changelog(reader, topic, p))
            for name, topic in changelogs.items()
            for p in partitions
        )
    finally:
        reader.close()


def _changelog(
    reader: Consumer, topic: str, partition: int
) -> Iterator[tuple[bytes, bytes | None]]:
    """Every committed record of one changelog partition, up to where it ends now."""
    _low, high = reader.get_watermark_offsets(TP(topic, partition), timeout=TIMEOUT_S)
    if high <= 0:
        return
    reader.assign([TP(topic, partition, OFFSET_BEGINNING)])
    waiting_since = time.monotonic()
    try:
        while True:
            messages = reader.consume(10_000, 0.2)
            for msg in records_of(messages):
                yield msg.key() or b"", msg.value()
            [pos] = reader.position([TP(topic, partition)])
            # position() moves past transaction markers and aborted records too.
            if pos.offset != OFFSET_INVALID and pos.offset >= high:
                return
            if messages:
                waiting_since = time.monotonic()
            elif time.monotonic() - waiting_since > 15:
                # An open transaction of a worker that died holds the end back until the
                # broker aborts it (transaction.timeout.ms): say so, and keep waiting.
                log.warning(
                    "restoring %s[%d]: waiting to read past offset %s of %d",
                    topic,
                    partition,
                    pos.offset,
                    high,
                )
                waiting_since = time.monotonic()
    finally:
        reader.unassign()
