"""Records a processor cannot use go to `deadletter` with the reason; processing goes on."""

from __future__ import annotations

import logging

import faust

from infra.deadletter import dead_letter
from infra.settings import Settings
from processors.app import raw_topic
from processors.records import SourceRecord, where
from schemas.codec import Codec

log = logging.getLogger(__name__)


class DeadLetters:
    """The dead-letter outlet of one processor (its consumer group names the letters)."""

    def __init__(self, app: faust.App, settings: Settings, codec: Codec, component: str) -> None:
        self._topic = raw_topic(app, settings, "deadletter")
        self._codec = codec
        self.consumer = f"{settings.topic_prefix}{component}"

    async def reject(self, record: SourceRecord, error: Exception, case_id: str = "") -> None:
        """Dead-letter `record` with `error` as the reason, and wait until the broker has
        it: the record's offset may be committed right after."""
        log.warning("dead-lettering %s: %s: %s", where(record), type(error).__name__, error)
        letter = dead_letter(
            consumer=self.consumer,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=record.headers,
            error=error,
            case_id=case_id,
        )
        value, headers = self._codec.encode(letter)
        sent = await self._topic.send(key=record.key, value=value, headers=headers)
        await sent
