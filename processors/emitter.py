"""Producing a processor's events: encoded, keyed by case_id, acknowledged before state moves.

The ordering rule every agent follows: produce the events an input causes, wait until
the broker has acknowledged them, and only then write the state that records the input
as handled. State therefore never runs ahead of the events, so a processor killed at any
point and restarted either finds the input unhandled (and, deciding at the record's own
time, produces the same events again, which consumers drop by event_id) or handled with
its events already durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import faust

from infra.settings import Settings
from processors.app import raw_topic
from schemas.codec import Codec
from schemas.events import Event


class Emitter:
    """Sends events to their own topics (`Event.topic`) among those named at build time."""

    def __init__(
        self, app: faust.App, settings: Settings, codec: Codec, topics: Sequence[str]
    ) -> None:
        self._codec = codec
        self._topics = {name: raw_topic(app, settings, name) for name in topics}

    async def emit(self, events: Sequence[Event]) -> None:
        """Produce `events` in order and wait for every acknowledgement.

        All are encoded first: an event that breaks its schema raises InvalidEvent before
        anything is sent, so the caller can dead-letter the input cleanly.
        """
        encoded = [
            (self._topics[e.topic], e.case_id.encode(), *self._codec.encode(e)) for e in events
        ]
        pending = [
            await topic.send(key=key, value=value, headers=headers)
            for topic, key, value, headers in encoded
        ]
        await asyncio.gather(*pending)
