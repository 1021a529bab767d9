"""The intake processor: first reader of ``cases``; dead-letters what upstream got wrong."""

from __future__ import annotations

import faust

from infra.settings import Settings
from processors.app import create_app, raw_topic
from processors.consume import CRASH, each_record
from processors.deadletters import DeadLetters
from processors.intake_rules import KnownCase, Verdict, check, evolve
from processors.records import record_key
from schemas.codec import Codec
from schemas.errors import CodecError, InvalidEvent

COMPONENT = "intake"


def build(settings: Settings, codec: Codec) -> faust.App:
    app = create_app(settings, COMPONENT)
    cases = raw_topic(app, settings, "cases")
    dead_letters = DeadLetters(app, settings, codec, COMPONENT)
    # key_type: the changelog holds raw bytes; keys come back as str after a restart.
    known = app.Table("cases", default=None, key_type=str)

    @app.agent(cases, supervisor_strategy=CRASH)
    async def intake(stream: faust.StreamT) -> None:
        async for msg in each_record(stream, settings):
            try:
                event = codec.decode(msg.value, msg.headers)
            except CodecError as exc:
                await dead_letters.reject(msg, exc)
                continue
            raw = known.get(event.case_id) if event.case_id else None
            before = KnownCase(**raw) if raw else None
            result = check(before, event, record_key(msg))
            if result.verdict is Verdict.REJECT:
                await dead_letters.reject(msg, InvalidEvent(result.reason))
            elif result.verdict is Verdict.ACCEPT:
                after = evolve(before, event)
                if after is not None and after != before:
                    known[event.case_id] = {
                        "status": after.status,
                        "opened_event_id": after.opened_event_id,
                    }

    return app
