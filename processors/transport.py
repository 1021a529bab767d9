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

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import Message


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


class HandledOnlyConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def ack(self, message: Message) -> bool:
        # A stream marks a record as tracked when it takes it for an agent; the records it
        # skips around a rebalance are acknowledged untracked.
        if not message.tracked:
            return False
        return super().ack(message)

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
