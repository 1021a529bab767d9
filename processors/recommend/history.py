"""The baseline's memory: every worker reads all of `cases` (outside the consumer group) into
its own BaselineIndex, from the beginning at start-up and then as cases resolve.

A worker recommends for its own partitions but learns from every partition's history, so
it follows the topic with manual assignment of all partitions. Until that replay has
reached where the topic ended at start-up, `index()` waits: no case is recommended from a
half-built memory. A policy that changes what models may see rebuilds the index from the
beginning, since the index holds only the text the old allowlist let through.

Learning and searching are CPU-bound (decoding, TF-IDF, neighbour search): both run on the
memory's one thread (`run`), never on the event loop, where a long replay or a backlog of
cases would starve faust's consumer keepalive and heartbeats. One thread also serialises
them, so a search never sees the index half-updated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.settings import Settings
from processors.app import start_follower
from processors.recommend.baseline import BaselineIndex
from processors.recommend.visibility import Visibility
from schemas.codec import Codec
from schemas.errors import CodecError

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class History:
    """Builds and keeps the BaselineIndex of one process."""

    def __init__(self, settings: Settings, codec: Codec, max_cases: int = 20_000) -> None:
        self._settings = settings
        self._codec = codec
        self._max_cases = max_cases
        self._index: BaselineIndex | None = None
        self._wanted: Visibility | None = None
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on the memory's thread, after what was queued before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    async def index(self, visibility: Visibility) -> BaselineIndex:
        """The index built under ``visibility``; waits while it is being (re)built."""
        if self._wanted != visibility:
            self._wanted = visibility
            self._ready.clear()
            self._changed.set()
        await self._ready.wait()
        if self._index is None:  # unreachable: ready is set only once built
            raise RuntimeError("history ready without an index")
        return self._index

    async def follow(self) -> None:
        """Read the whole topic and keep reading; restart from the beginning on demand."""
        await self._changed.wait()
        consumer = await start_follower(self._settings, "history")
        try:
            topic = self._settings.topic("cases")
            partitions = consumer.partitions_for_topic(topic) or set()
            while not partitions:  # metadata may not be loaded yet
                await asyncio.sleep(0.2)
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            while True:
                await self._rebuild(consumer, tps)
                while not self._changed.is_set():
                    batch = await consumer.getmany(*tps, timeout_ms=500)
                    if batch:
                        await self.run(self._observe, batch)
        finally:
            await consumer.stop()

    async def _rebuild(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        self._changed.clear()
        visibility = self._wanted
        if visibility is None:  # unreachable: follow() starts once one is wanted
            raise RuntimeError("rebuild without a wanted visibility")
        index = BaselineIndex(visibility, max_cases=self._max_cases)
        self._index = index
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        read = 0
        while not await _reached(consumer, ends):
            batch = await consumer.getmany(*tps, timeout_ms=500, max_records=5000)
            read += await self.run(self._observe, batch)
        log.info(
            "baseline memory rebuilt from %d case events: %d resolved cases indexed",
            read,
            index.resolved_count,
        )
        if self._wanted == visibility:
            self._ready.set()

    def _observe(self, batch: dict[TopicPartition, list]) -> int:
        index = self._index
        count = 0
        for records in batch.values():
            for record in records:
                try:
                    event = self._codec.decode(record.value, record.headers)
                except CodecError:
                    continue  # intake dead-letters what upstream got wrong
                if index is not None:
                    index.observe(event)
                count += 1
        return count


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Has every partition been read up to ``ends``?"""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
