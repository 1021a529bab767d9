"""How every agent walks its stream: a record is acknowledged only once it is handled, and
handled only when every record before it in its partition was.

faust acknowledges a record even when the agent raises while handling it, and then
restarts the agent on the next record: the failed one would be committed, never handled.
Here the agent's stream does not acknowledge by itself (`noack`); a record is acked
after the agent's body finished with it, and an exception the body lets escape crashes
the worker (`CRASH`, the agents' supervisor strategy), so the record is read again after
the restart (at-least-once). Records that are merely bad are dead-lettered by the
agents, not raised.

faust can also fail to hand a record over at all: around a (re)assignment its stream
drops records fetched while its flow is paused, and the next record it hands over lies
past a hole that the offset commit would then skip (processors.transport keeps such
records from being acknowledged). `Continuity` notices the hole before the record after
it is handled, seeks the consumer back to it, and drops what arrives meanwhile without
acknowledging it; only if seeking back does not help does it stop the worker, which then
restarts from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import faust
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from faust.types import TP, Message
from mode import CrashingSupervisor

from infra.kafka import common_config
from infra.settings import Settings
from processors import transport

log = logging.getLogger(__name__)

# Agents' supervisor strategy: an escaping exception stops the worker, not just the agent.
CRASH = CrashingSupervisor


class SkippedRecords(RuntimeError):
    """Records of a partition were never handed to the agent and reading them again did
    not work; handling what follows would let the offset commit pass them. Raised to stop
    (and restart) the worker."""


@dataclass
class _Position:
    generation: int | None
    next_offset: int  # the next offset the agent must be handed
    rewinds: int = 0  # seeks back to next_offset since it was last handed over
    rewound_at: float | None = None  # monotonic time of the last one


class Continuity:
    """Per partition, the next offset the agent must be handed.

    At the first record of a partition in each consumer-group generation that is the
    group's committed offset; after that, one past the last record handed over. A record
    further on is handed over only when nothing the agent could have read lies in between
    (transaction markers take offsets too), which a read-committed reader checks; when
    something does, the consumer is sought back to the hole and what arrives meanwhile is
    dropped unacknowledged, to be read again in order.
    """

    def __init__(
        self,
        settings: Settings,
        group: str,
        timeout_s: float = 10.0,
        retry_after_s: float = 10.0,
        max_rewinds: int = 6,
    ) -> None:
        self._conf = common_config(settings)
        self._group = group
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._max_rewinds = max_rewinds
        self._positions: dict[TP, _Position] = {}
        self._admin: AdminClient | None = None
        # Since when the agent has been waiting for its next record (None: it is busy).
        self.idle_since: float | None = time.monotonic()

    async def admit(self, message: Message, consumer: faust.types.ConsumerT) -> bool:
        """True: hand `message` to the agent. False: drop it, a seek back is under way."""
        tp, generation = message.tp, message.generation_id
        at = self._positions.get(tp)
        if at is None or at.generation != generation:
            try:
                committed = await asyncio.to_thread(self._committed, tp)
            except (KafkaException, TimeoutError) as exc:
                # The broker is away (a restart): read this record again later, when
                # where the partition stands can be known.
                log.warning(
                    "%s[%d]: committed offset unknown (%s); reading %d again later",
                    tp.topic,
                    tp.partition,
                    exc,
                    message.offset,
                )
                await seek_back(consumer, tp, message.offset, message.offset)
                return False
            at = self._positions[tp] = _Position(generation, committed)
        if message.offset > at.next_offset:
            waiting = at.rewound_at is not None and (
                time.monotonic() - at.rewound_at < self._retry_after_s
            )
            if waiting:
                return False
            try:
                missed: list[int] | None = await asyncio.to_thread(
                    self._records_between, tp, at.next_offset, message.offset
                )
            except (KafkaException, TimeoutError):
                missed = None  # cannot tell: read the hole again, which is always safe
            if missed is None or missed:
                await self._rewind(tp, at, missed, message.offset, consumer)
                return False
        self._positions[tp] = _Position(generation, message.offset + 1)
        return True

    async def watch_tails(self, app: faust.types.AppT) -> None:
        """A hole at the end of a partition is revealed by no later record: while the
        agent waits for records, look for unhandled ones below each partition's high
        watermark now and then, and seek back to them."""
        while True:
            await asyncio.sleep(self._retry_after_s / 2)
            idle = self.idle_since
            if idle is not None and time.monotonic() - idle >= self._retry_after_s:
                await self.check_tails(app.consumer, app.consumer_generation_id)

    async def check_tails(self, consumer: faust.types.ConsumerT, generation: int) -> list[TP]:
        """Seek back each assigned partition that holds records never handed over before
        its high watermark; the partitions sought back."""
        assigned = consumer.assignment()
        sought = []
        for tp, at in list(self._positions.items()):
            if at.generation != generation or tp not in assigned:
                continue
            high = consumer.highwater(tp)  # None before the first fetch
            if high is None or high <= at.next_offset:
                continue
            try:
                missed = await asyncio.to_thread(self._records_between, tp, at.next_offset, high)
            except (KafkaException, TimeoutError):
                continue  # the broker is away; look again later
            if not missed:
                continue  # only transaction markers lie there
            log.warning(
                "%s[%d]: %d record(s) from offset %d were never handed over and none "
                "follows; seeking back to %d to read them",
                tp.topic,
                tp.partition,
                len(missed),
                missed[0],
                at.next_offset,
            )
            at.rewound_at = time.monotonic()
            # Nothing at or past `high` was known when the seek was decided.
            await seek_back(consumer, tp, at.next_offset, high - 1)
            sought.append(tp)
        return sought

    async def _rewind(
        self,
        tp: TP,
        at: _Position,
        missed: list[int] | None,
        handed: int,
        consumer: faust.types.ConsumerT,
    ) -> None:
        what = f"{tp.topic}[{tp.partition}]: handed offset {handed} while " + (
            f"{len(missed)} record(s) from offset {missed[0]} were never handed over"
            if missed
            else f"what lies from offset {at.next_offset} could not be read"
        )
        if missed:
            # Only a hole seen to hold records counts: a broker that is away (no answer)
            # may take minutes to come back, and reading again is safe meanwhile.
            if at.rewinds >= self._max_rewinds:
                raise SkippedRecords(
                    f"{what}, after {at.rewinds} seeks back; stopping so that "
                    "the worker restarts from its committed offset"
                )
            at.rewinds += 1
        log.warning("%s; seeking back to %d to read it in order", what, at.next_offset)
        at.rewound_at = time.monotonic()
        await seek_back(consumer, tp, at.next_offset, handed)

    def _committed(self, tp: TP) -> int:
        """The group's committed offset of `tp` (the earliest offset when none)."""
        if self._admin is None:
            self._admin = AdminClient(self._conf)
        request = ConsumerGroupTopicPartitions(
            self._group, [TopicPartition(tp.topic, tp.partition)]
        )
        [future] = self._admin.list_consumer_group_offsets([request]).values()
        [found] = future.result(self._timeout_s).topic_partitions
        if found.offset >= 0:
            return int(found.offset)
        reader = self._reader()
        try:
            low, _high = reader.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=self._timeout_s
            )
        finally:
            reader.close()
        return int(low)

    def _records_between(self, tp: TP, start: int, end: int) -> list[int]:
        """Offsets in [start, end) of records a read-committed consumer is given."""
        reader = self._reader()
        deadline = time.monotonic() + self._timeout_s
        found: list[int] = []
        try:
            reader.assign([TopicPartition(tp.topic, tp.partition, start)])
            while time.monotonic() < deadline:
                for msg in reader.consume(100, 0.5):
                    if msg.error() is not None:
                        continue
                    offset = cast(int, msg.offset())
                    if offset >= end:
                        return found
                    found.append(offset)
                position = reader.position([TopicPartition(tp.topic, tp.partition)])[0].offset
                if position >= end:  # past the hole: only markers were in it
                    return found
        finally:
            reader.close()
        raise KafkaException(f"could not read {tp.topic}[{tp.partition}] from {start} to {end}")

    def _reader(self) -> Consumer:
        return Consumer(
            {
                **self._conf,
                "group.id": f"{self._group}.continuity-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )


async def each_record(stream: faust.StreamT, settings: Settings) -> AsyncIterator[Message]:
    """The stream's records in partition order, none skipped; each is acked when the
    caller asks for the next one."""
    app = stream.app
    continuity = Continuity(settings, app.conf.id)
    watchdog = asyncio.ensure_future(continuity.watch_tails(app))
    manual = cast("faust.Stream[Any]", stream).noack()  # StreamT's stub lacks noack()
    try:
        async for event in manual.events():
            continuity.idle_since = None
            if not await continuity.admit(event.message, app.consumer):
                # Dropped, never acked: it is read again after the seek back.
                forget(app.consumer, event.message)
            else:
                yield event.message
                # Reached only if the loop body returned normally: an exception closes
                # this generator at the `yield` above, leaving the record unacknowledged.
                event.ack()
            continuity.idle_since = time.monotonic()
    finally:
        watchdog.cancel()


def forget(consumer: faust.types.ConsumerT, message: Message) -> None:
    """Let the consumer stop waiting for a dropped record, leaving its offset uncommitted."""
    if isinstance(consumer, transport.HandledOnlyConsumer):
        consumer.forget(message)


async def seek_back(consumer: faust.types.ConsumerT, tp: TP, offset: int, handed: int) -> None:
    """Read `tp` again from `offset` (the record at `handed` revealed why), from the
    consumer's own thread where it can."""
    if isinstance(consumer, transport.HandledOnlyConsumer):
        await consumer.seek_back(tp, offset, handed)
    else:
        await consumer.seek(tp, offset)
