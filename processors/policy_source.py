"""The policy a running processor decides with: the newest PolicyPublished it has read.

The `policy` topic has one partition, so it is read outside the consumer group (manual
assignment, from the beginning) by every worker of every processor; a newly published
policy takes effect without a restart. Until the topic has been read up to where it
ended at start-up, and a valid policy is known, `current()` waits: a processor never
decides with an older document than the one published, nor with one it made up.
"""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from infra.settings import Settings
from policy.loader import LoadedPolicy, PolicyInvalid, load_policy_text
from processors.app import start_follower
from processors.deadletters import DeadLetters
from processors.records import where
from schemas.codec import Codec
from schemas.errors import CodecError, InvalidEvent
from schemas.events import PolicyPublished

log = logging.getLogger(__name__)


class PolicySource:
    """Follows the policy topic for one process and hands out the newest valid policy."""

    def __init__(self, settings: Settings, codec: Codec, dead_letters: DeadLetters) -> None:
        self._settings = settings
        self._codec = codec
        self._dead_letters = dead_letters
        self._latest: LoadedPolicy | None = None
        self._caught_up = False
        self._ready = asyncio.Event()

    @property
    def latest(self) -> LoadedPolicy | None:
        return self._latest

    async def current(self) -> LoadedPolicy:
        """The newest policy read so far; waits while none is known yet."""
        if not self._ready.is_set():
            log.warning("a record waits for a policy: none published yet, or not read yet")
        await self._ready.wait()
        if self._latest is None:  # unreachable: ready is set only once a policy is known
            raise RuntimeError("policy source ready without a policy")
        return self._latest

    def attach(self, app: faust.App) -> None:
        """Follow the topic for as long as `app` runs."""

        @app.task
        async def follow_policy() -> None:
            await self.follow()

    async def follow(self) -> None:
        tp = TopicPartition(self._settings.topic("policy"), 0)
        consumer = await start_follower(self._settings, "policies")
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end_at_start = (await consumer.end_offsets([tp]))[tp]
            log.info("reading policies from %s up to offset %d", tp.topic, end_at_start)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=500)
                for record in batch.get(tp, []):
                    await self._apply(record)
                if not self._caught_up and await consumer.position(tp) >= end_at_start:
                    self._caught_up = True
                    if self._latest is None:
                        log.warning(
                            "no policy published on %s yet: nothing is decided "
                            "until one is (`casegate policy publish FILE`)",
                            tp.topic,
                        )
                self._maybe_ready()
        finally:
            await consumer.stop()

    async def _apply(self, record: ConsumerRecord) -> None:
        """Take a published policy, or dead-letter it and keep the one in force."""
        try:
            event = self._codec.decode(record.value, record.headers)
            if not isinstance(event, PolicyPublished):
                raise InvalidEvent(f"{event.event_type} does not belong on the policy topic")
            loaded = load_policy_text(event.document)
            if (loaded.sha256, loaded.version) != (event.sha256, event.version):
                raise InvalidEvent(
                    f"document has sha256 {loaded.sha256} and version {loaded.version}; "
                    f"the event says {event.sha256} and {event.version}"
                )
        except (CodecError, PolicyInvalid) as exc:
            await self._dead_letters.reject(record, exc)
            return
        self._latest = loaded
        log.info(
            "%s: policy %s (sha256 %.12s) by %s is in force",
            where(record),
            loaded.version,
            loaded.sha256,
            event.author,
        )

    def _maybe_ready(self) -> None:
        if self._caught_up and self._latest is not None and not self._ready.is_set():
            self._ready.set()
