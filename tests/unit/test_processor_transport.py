"""Given a processor's faust app, its Kafka clients follow casegate's delivery rules:
an idempotent acks=all producer, a read-committed consumer, and acknowledgements counted
only for records an agent was handed (no broker needed: nothing is started)."""

from __future__ import annotations

import asyncio

from faust.types import TP
from faust.types.tuples import ConsumerMessage

from infra.settings import Settings
from processors.app import create_app
from processors.transport import HandledOnlyConsumer


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
