"""The intake processor: first reader of ``cases``; dead-letters what upstream got wrong."""

from __future__ import annotations

import logging

import faust

from infra.deadletter import dead_letter
from infra.settings import Settings
from processors.app import create_app, raw_topic
from processors.intake_rules import KnownCase, Verdict, check, evolve
from schemas.codec import Codec
from schemas.errors import CodecError, InvalidEvent

log = logging.getLogger(__name__)
COMPONENT = "intake"


def build(settings: Settings, codec: Codec) -> faust.App:
    app = create_app(settings, COMPONENT)
    cases = raw_topic(app, settings, "cases")
    deadletter = raw_topic(app, settings, "deadletter")
    known = app.Table("cases", default=None)
    consumer_name = f"{settings.topic_prefix}{COMPONENT}"

    async def reject(ev: faust.EventT, error: Exception) -> None:
        msg = ev.message
        log.warning("dead-lettering %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, error)
        letter = dead_letter(
            consumer=consumer_name,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            headers=msg.headers,
            error=error,
        )
        value, hdrs = codec.encode(letter)
        await deadletter.send(key=msg.key, value=value, headers=hdrs)

    @app.agent(cases)
    async def intake(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            msg = ev.message
            try:
                event = codec.decode(msg.value, msg.headers)
            except CodecError as exc:
                await reject(ev, exc)
                continue
            key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
            raw = known[event.case_id] if event.case_id else None
            before = KnownCase(**raw) if raw else None
            result = check(before, event, key)
            if result.verdict is Verdict.REJECT:
                await reject(ev, InvalidEvent(result.reason))
            elif result.verdict is Verdict.ACCEPT:
                after = evolve(before, event)
                if after is not None and after != before:
                    known[event.case_id] = {
                        "status": after.status,
                        "opened_event_id": after.opened_event_id,
                    }

    return app
