"""Given the records faust hands an agent, when one lies past a hole that holds records,
then it is not handed over: the consumer is sought back to the hole, and what arrives
meanwhile is dropped until the missing record comes; a hole of transaction markers only
is no hole. (The broker-facing parts are replaced by the committed offset and the
records a read-committed reader would find.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import KafkaException
from faust.types import TP, Message

from infra.settings import Settings
from processors.consume import Continuity, SkippedRecords

TOPIC = TP("t.cases", 2)


@dataclass
class FakeConsumer:
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    high: int | None = None  # the partition's high watermark as last fetched

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TP]:
        return {TOPIC}

    def highwater(self, tp: TP) -> int | None:
        return self.high


@dataclass(frozen=True)
class FakeMessage:
    offset: int
    generation_id: int = 1
    tp: TP = TOPIC


class Partition(Continuity):
    """Continuity over a partition whose committed offset and records are given."""

    def __init__(self, committed: int, records: set[int], **kwargs: Any) -> None:
        super().__init__(Settings(), "t.intake", **kwargs)
        self.committed, self.records = committed, records

    def _committed(self, tp: TP) -> int:
        return self.committed

    def _records_between(self, tp: TP, start: int, end: int) -> list[int]:
        return sorted(o for o in self.records if start <= o < end)


def handed(
    part: Partition, consumer: FakeConsumer, *offsets: int, generation: int = 1
) -> list[int]:
    async def run() -> list[int]:
        out = []
        for offset in offsets:
            message = cast(Message, FakeMessage(offset, generation))
            if await part.admit(message, cast(Any, consumer)):
                out.append(offset)
        return out

    return asyncio.run(run())


def test_records_in_order_from_the_committed_offset_are_handed_over() -> None:
    part, consumer = Partition(committed=10, records=set(range(10, 20))), FakeConsumer()

    assert handed(part, consumer, 10, 11, 12) == [10, 11, 12]
    assert consumer.seeks == []


def test_a_record_past_a_hole_is_held_back_and_the_consumer_sought_back() -> None:
    # Given records 10.. of which faust skipped 10 and 11 around a rebalance
    part, consumer = Partition(committed=10, records=set(range(10, 20))), FakeConsumer()

    # When it hands 12, 13 (buffered before the seek took effect), then 10, 11, 12, 13
    got = handed(part, consumer, 12, 13, 10, 11, 12, 13)

    # Then nothing is handed out of order, and one seek back to the hole was made
    assert got == [10, 11, 12, 13]
    assert consumer.seeks == [(TOPIC, 10)]


def test_a_hole_of_transaction_markers_only_is_no_hole() -> None:
    part, consumer = Partition(committed=10, records={12, 13}), FakeConsumer()  # 10, 11 markers

    assert handed(part, consumer, 12, 13) == [12, 13]
    assert consumer.seeks == []


def test_a_new_generation_starts_again_from_the_committed_offset() -> None:
    part, consumer = Partition(committed=10, records=set(range(0, 40))), FakeConsumer()
    assert handed(part, consumer, 10, 11) == [10, 11]

    # Another worker handled up to 29 meanwhile; after the rebalance 30 comes first.
    part.committed = 30

    assert handed(part, consumer, 30, 31, generation=2) == [30, 31]
    assert consumer.seeks == []


def test_seeking_back_again_and_again_in_vain_stops_the_worker() -> None:
    part = Partition(committed=10, records=set(range(10, 20)), retry_after_s=0.0, max_rewinds=2)
    consumer = FakeConsumer()

    with pytest.raises(SkippedRecords, match="from offset 10 were never handed over"):
        handed(part, consumer, 12, 12, 12)
    assert consumer.seeks == [(TOPIC, 10), (TOPIC, 10)]


class BrokerAway(Partition):
    """The broker does not answer: neither the committed offset nor the records are known."""

    def __init__(self, answers_committed: bool, **kwargs: Any) -> None:
        super().__init__(committed=10, records=set(range(10, 20)), **kwargs)
        self.answers_committed = answers_committed

    def _committed(self, tp: TP) -> int:
        if not self.answers_committed:
            raise KafkaException("broker away")
        return super()._committed(tp)

    def _records_between(self, tp: TP, start: int, end: int) -> list[int]:
        raise KafkaException("broker away")


def test_with_the_broker_away_a_record_past_the_known_position_is_read_again_later() -> None:
    part = BrokerAway(answers_committed=True, retry_after_s=0.0, max_rewinds=1)
    consumer = FakeConsumer()

    # Not knowing what lies in between, it seeks back every time and never gives up.
    assert handed(part, consumer, 12, 12, 12, 10, 11, 12) == [10, 11, 12]
    assert consumer.seeks == [(TOPIC, 10)] * 3


def test_with_the_broker_away_the_first_record_waits_until_the_position_is_known() -> None:
    part = BrokerAway(answers_committed=False)
    consumer = FakeConsumer()

    assert handed(part, consumer, 10) == []
    assert consumer.seeks == [(TOPIC, 10)]  # this very record, read again later
    part.answers_committed = True
    assert handed(part, consumer, 10, 11) == [10, 11]


def tails(part: Partition, consumer: FakeConsumer, generation: int = 1) -> list[TP]:
    return asyncio.run(part.check_tails(cast(Any, consumer), generation))


def test_records_skipped_at_the_end_of_a_partition_are_sought_back_to() -> None:
    # Given 10..13 handed, then 14 and 15 skipped by faust, and nothing after them
    part, consumer = Partition(committed=10, records=set(range(10, 16))), FakeConsumer(high=16)
    assert handed(part, consumer, 10, 11, 12, 13) == [10, 11, 12, 13]

    # When the tails are checked, then the partition is sought back to the first one
    assert tails(part, consumer) == [TOPIC]
    assert consumer.seeks == [(TOPIC, 14)]
    assert handed(part, consumer, 14, 15) == [14, 15]


def test_a_partition_handed_to_its_end_or_ending_in_markers_is_left_alone() -> None:
    part, consumer = Partition(committed=10, records={10, 11}), FakeConsumer(high=12)
    assert handed(part, consumer, 10, 11) == [10, 11]
    assert tails(part, consumer) == []

    consumer.high = 14  # 12 and 13 are transaction markers
    assert tails(part, consumer) == []
    assert tails(part, consumer, generation=2) == []  # another generation: not ours to judge
    assert consumer.seeks == []
