"""Given a processor's faust app, its Kafka clients follow casegate's delivery rules:
an idempotent acks=all producer, a read-committed consumer, and acknowledgements counted
only for records an agent was handed (no broker needed: nothing is started)."""

from __future__ import annotations

import asyncio

from faust.types import TP
from faust.types.tuples import ConsumerMessage

from infra.settings import Settings
from processors.app import create_app
from processors.transport import HandledOnlyConsumer, ReadOffsets


def test_the_producer_is_idempotent_with_acks_all() -> None:
    app = create_app(Settings(), "unit")

    extra = app.producer._settings_extra()  # type: ignore[attr-defined]

    assert extra["enable_idempotence"] is True and extra["acks"] == "all"


def test_the_consumer_reads_committed_records_only() -> None:
    app = create_app(Settings(), "unit")
    consumer = app.consumer
    assert isinstance(consumer, HandledOnlyConsumer)

    async def build() -> str:
        # aiokafka builds its client inside a running loop; it is never started here.
        client = consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
        return str(client._isolation_level)

    assert asyncio.run(build()) == "read_committed"


def test_an_acknowledgement_of_a_record_no_agent_was_handed_is_ignored() -> None:
    app = create_app(Settings(), "unit")
    consumer = app.consumer
    skipped = ConsumerMessage("t.cases", 0, 7, 0.0, 0, [], b"k", b"v", None)
    assert not skipped.tracked  # a stream tracks what it hands to an agent

    assert consumer.ack(skipped) is False
    assert consumer._acked[TP("t.cases", 0)] == []  # type: ignore[attr-defined]


def test_records_fetched_before_a_seek_back_do_not_move_the_read_offset() -> None:
    tp = TP("cases", 3)
    offsets = ReadOffsets()
    offsets[tp] = 40  # the fetch loop has read up to 40
    offsets.expect(tp, 38)  # record 38 revealed a hole at 12: seek back to 12
    # Unknown until the hole comes: faust's loop then drops nothing and assumes no gap.
    assert offsets[tp] is None
    offsets[tp] = 39  # the rest of the batch fetched before the seek
    offsets[tp] = 40
    assert offsets[tp] is None, "a stale record would make 12.. be dropped as already read"
    offsets[tp] = 12  # the hole, fetched anew
    assert offsets[tp] == 12
    offsets[tp] = 13
    assert offsets[tp] == 13


def test_a_seek_to_the_committed_offsets_or_a_revocation_ends_the_wait_for_a_seek_back() -> None:
    tp, other = TP("cases", 0), TP("cases", 1)
    offsets = ReadOffsets()
    offsets.expect(tp, 5)
    offsets.update({tp: 3, other: 8})  # faust's perform_seek
    assert (offsets[tp], offsets[other]) == (3, 8)
    offsets.expect(tp, 5)
    offsets.pop(tp, None)  # partition revoked
    offsets[tp] = 20
    assert offsets[tp] == 20


def test_the_processors_consumer_keeps_its_read_offsets_that_way() -> None:
    consumer = create_app(Settings(), "unit").consumer
    assert isinstance(consumer._read_offset, ReadOffsets)  # type: ignore[attr-defined]
