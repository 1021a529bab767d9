"""faust's Kafka transport (aiokafka) with casegate's delivery rules, where faust's own
defaults fall short of them:

- the producer is idempotent with acks=all (faust turns idempotence on only in its
  exactly-once mode), so a retried send can neither duplicate nor reorder a partition;
- the consumer reads committed records only (faust reads uncommitted ones outside its
  exactly-once mode), like every other casegate consumer: a `casegate produce` whose
  transaction aborted is never acted on;
- only records that an agent was handed count towards the committed offset. Around a
  (re)assignment faust's stream drops records fetched while its flow is paused and
  acknowledges them as if handled (faust.streams, "Skipping message"), so the offset
  commit could pass records no agent ever saw: after a restart they were lost (found by
  the chaos run, bench/chaos.py). A record never handed to an agent is not tracked; its
  acknowledgement is ignored here, and processors.consume refuses to go past the hole.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message


class DurableProducer(driver.Producer):
    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class ReadCommittedConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # The client takes the level only in its constructor, which faust calls with
        # read_uncommitted; it is read when the consumer starts, which has not happened yet.
        consumer._isolation_level = "read_committed"
        return consumer


class ReadOffsets(defaultdict[TP, int | None]):
    """faust's per-partition "last offset read", which its fetch loop uses to drop records
    at or below it. After a seek back, the loop may still be walking a batch fetched
    before the seek, past the record H that revealed the hole, and each of those records
    would move the offset on again, so that the hole, fetched anew, is dropped as already
    read and never filled (seen after restarts). So after a seek back, until a record at
    or below H comes (fetched anew: the old batch holds only records past H), the offset
    reads as unknown (nothing dropped, no gap assumed) and records past H do not move it.
    """

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self._stale_after: dict[TP, int] = {}

    def expect(self, tp: TP, handed: int) -> None:
        """`tp` was sought back; records past `handed` are from before the seek."""
        self._stale_after[tp] = handed
        super().__setitem__(tp, None)

    def __getitem__(self, tp: TP) -> int | None:
        if tp in self._stale_after:
            return None
        return super().__getitem__(tp)

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        handed = self._stale_after.get(tp)
        if handed is not None:
            if offset is not None and offset > handed:
                return  # a record of the batch fetched before the seek
            del self._stale_after[tp]
        super().__setitem__(tp, offset)

    def __delitem__(self, tp: TP) -> None:
        self._stale_after.pop(tp, None)
        super().__delitem__(tp)

    def pop(self, tp: TP, *default: Any) -> Any:  # type: ignore[override]
        self._stale_after.pop(tp, None)
        return super().pop(tp, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # faust's seek to the committed offsets: a fresh start for those partitions.
        for tp, offset in dict(*args, **kwargs).items():
            self._stale_after.pop(tp, None)
            super().__setitem__(tp, offset)


class HandledOnlyConsumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = ReadOffsets()

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def ack(self, message: Message) -> bool:
        # A stream marks a record as tracked when it takes it for an agent; the records it
        # skips around a rebalance are acknowledged untracked.
        if not message.tracked:
            return False
        return super().ack(message)

    async def seek_back(self, tp: TP, offset: int, handed: int) -> None:
        """Read `tp` again from `offset`, having been handed the record at `handed`.

        faust's own seek() calls into the aiokafka client from the agent's thread while
        the client's fetcher runs in its own, and the two collide (a KeyError in the
        fetcher, which stops the worker: seen in the chaos run); here the seek runs on the
        client's thread, as faust's seek_to_committed does. Then the read offset waits for
        the records sought back to (`ReadOffsets`).
        """
        thread = self._thread

        async def seek() -> None:  # runs on the client's thread
            thread.seek(tp, offset)

        await thread.call_thread(seek)
        read_offsets = self._read_offset
        if isinstance(read_offsets, ReadOffsets):
            read_offsets.expect(tp, handed)
        else:
            read_offsets[tp] = offset

    def forget(self, message: Message) -> None:
        """A record the agent was handed but dropped (processors.consume seeks back to read
        it again): no longer awaited before a rebalance, and its offset not acknowledged."""
        message.acked = True
        self._unacked_messages.discard(message)


class Transport(driver.Transport):
    Consumer = HandledOnlyConsumer
    Producer = DurableProducer


def install(app: faust.App) -> None:
    """Make `app` consume and produce through this transport (before it starts)."""
    app.transport = Transport(app.conf.broker_consumer, app)
    app.producer_transport = Transport(app.conf.broker_producer, app)
