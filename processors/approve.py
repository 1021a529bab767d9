"""The approve processor: the approval queue between the guard and the executor.

It reads `decisions` and `reviews` side by side (co-partitioned by case_id) and keeps,
per partition:
- `approval_items`: recommendation_id -> its queue item (`approve_rules.Pending`),
  kept after it closes so that late reviews are refused, or a marker for a decision
  that opened no item (a review of it is refused at once);
- `waiting_reviews`: recommendation_id -> reviews read before the decision they answer
  (after a restart both topics are replayed side by side), handled when it arrives, or
  refused as `unknown_item` once they have waited `review_wait_s` for it.
The rules are `approve_rules`; each input is handled at its record's time. A timer finds
items past expiry and produces ApprovalExpired; the item closes when the agent reads
that event back, because only the stream may write the tables.
"""

from __future__ import annotations

import logging
import time

import faust
from faust.types import TP

from infra.settings import Settings
from processors.app import create_app, raw_topic
from processors.approve_rules import (
    PENDING,
    Pending,
    on_decision,
    on_expired,
    on_review,
    on_tick,
)
from processors.approve_state import item_from_json, item_to_json, no_item
from processors.consume import CRASH, each_record
from processors.deadletters import DeadLetters
from processors.emitter import Emitter
from processors.policy_source import PolicySource
from processors.records import HeldRecord, record_key, record_time, where
from schemas.codec import Codec
from schemas.errors import CodecError, InvalidEvent
from schemas.events import (
    ApprovalCompleted,
    ApprovalExpired,
    CaseReclassified,
    Event,
    GuardrailDecided,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    utc_now,
)

log = logging.getLogger(__name__)
COMPONENT = "approve"
UNKNOWN_ITEM = "unknown_item"


def build(settings: Settings, codec: Codec) -> faust.App:
    app = create_app(settings, COMPONENT)
    inputs = raw_topic(app, settings, "decisions", "reviews")
    decisions_topic = settings.topic("decisions")
    dead_letters = DeadLetters(app, settings, codec, COMPONENT)
    emitter = Emitter(app, settings, codec, ["decisions", "executions"])
    policies = PolicySource(settings, codec, dead_letters)
    policies.attach(app)
    items = app.Table("approval_items", default=None, key_type=str)
    waiting = app.Table("waiting_reviews", default=None, key_type=str)

    def load(recommendation_id: str) -> Pending | None:
        return item_from_json(items.get(recommendation_id))

    def store(before: Pending | None, after: Pending | None, partition: int) -> None:
        if after is not None and after != before:
            items[after.recommendation_id] = item_to_json(after, partition)

    def waited_out(record: HeldRecord) -> bool:
        return time.time() >= record.held_at + settings.review_wait_s

    async def apply_review(review: ReviewSubmitted, at: float, partition: int) -> None:
        """One review against its item (None: refused as unknown), events before state."""
        item = load(review.recommendation_id)
        after, events = on_review(item, review, await policies.current(), record_time(at))
        await emitter.emit(events)
        store(item, after, partition)

    async def release_waiting(recommendation_id: str, partition: int) -> None:
        """The decision is in: handle the reviews that waited for it, in their order."""
        for entry in waiting.get(recommendation_id) or ():
            record = HeldRecord.from_json(entry["record"])
            review = codec.decode(record.value)
            if not isinstance(review, ReviewSubmitted):
                continue
            if waited_out(record):
                # The timer may already have refused it: refuse it the same way.
                await emit_refusal(review, record)
            else:
                await apply_review(review, record.timestamp, partition)
        if recommendation_id in waiting:
            del waiting[recommendation_id]

    async def emit_refusal(review: ReviewSubmitted, record: HeldRecord) -> None:
        _, events = on_review(None, review, await policies.current(), record_time(record.timestamp))
        await emitter.emit(events)

    async def on_decisions(msg: faust.types.Message, event: Event) -> None:
        if isinstance(event, GuardrailDecided):
            item = load(event.recommendation_id)
            # At the decision's own time, not its record's: a decision the guard produced
            # twice (killed before it noted it) has two records with two timestamps, and
            # an automatic run's request must come out the same from either.
            after, events = on_decision(event, event.occurred_at, item)
            await emitter.emit(events)
            store(item, after, msg.partition)
            if after is None and event.recommendation_id not in items:
                items[event.recommendation_id] = no_item(event.outcome, msg.partition)
            await release_waiting(event.recommendation_id, msg.partition)
        elif isinstance(event, ApprovalExpired):
            item = load(event.recommendation_id)
            store(item, on_expired(item, event), msg.partition)
        elif isinstance(event, ReviewDenied) and event.reason == UNKNOWN_ITEM:
            forget_waiting(event)
        elif not isinstance(event, ReviewDenied | ReviewRecorded | ApprovalCompleted):
            raise InvalidEvent(f"{type(event).__name__} does not belong on the decisions topic")

    def forget_waiting(denied: ReviewDenied) -> None:
        """A refusal of a waiting review (the timer's) is read back: it waits no more."""
        key = denied.recommendation_id or ""
        entries = waiting.get(key) or []
        kept = [e for e in entries if e["review_id"] != denied.review_id]
        if len(kept) != len(entries):
            if kept:
                waiting[key] = kept
            else:
                del waiting[key]

    async def on_reviews(msg: faust.types.Message, event: Event) -> None:
        if isinstance(event, CaseReclassified):
            return  # the projections and the recommender use it; the queue does not
        if not isinstance(event, ReviewSubmitted):
            raise InvalidEvent(f"{type(event).__name__} does not belong on the reviews topic")
        if record_key(msg) != event.case_id:
            raise InvalidEvent(
                f"record key {record_key(msg)!r} differs from case_id "
                f"{event.case_id!r}; reviews are keyed by case_id"
            )
        if event.recommendation_id in items:
            await apply_review(event, msg.timestamp, msg.partition)
            return
        entries = list(waiting.get(event.recommendation_id) or ())
        if event.event_id not in {e["event_id"] for e in entries}:
            log.debug(
                "%s: review %s waits for the decision on recommendation %s",
                where(msg),
                event.review_id,
                event.recommendation_id,
            )
            record = HeldRecord.of(msg, held_at=time.time())
            entries.append(
                {
                    "event_id": event.event_id,
                    "review_id": event.review_id,
                    "record": record.to_json(),
                }
            )
            waiting[event.recommendation_id] = entries

    @app.agent(inputs, supervisor_strategy=CRASH)
    async def approve(stream: faust.StreamT) -> None:
        async for msg in each_record(stream, settings):
            try:
                event = codec.decode(msg.value, msg.headers)
                if msg.topic == decisions_topic:
                    await on_decisions(msg, event)
                else:
                    await on_reviews(msg, event)
            except (CodecError, ValueError) as exc:
                await dead_letters.reject(msg, exc)

    @app.timer(interval=settings.approval_tick_s)
    async def expire() -> None:
        """Produce ApprovalExpired for open items past expiry, and refuse reviews that
        waited out their decision, in the partitions this worker is active for."""
        actives = app.assignor.assigned_actives()
        now = utc_now()
        events: list[Event] = []
        for raw in list(items.values()):
            item = item_from_json(raw)
            if (
                item is not None
                and item.status == PENDING
                and now >= item.expires_at
                and TP(decisions_topic, raw["partition"]) in actives
            ):
                # At its expiry instant, so every tick that sees it produces the same event.
                events += on_tick(item, item.expires_at)[1]
        policy = policies.latest
        for recommendation_id, entries in list(waiting.items()):
            if policy is None or recommendation_id in items:
                continue  # the agent handles reviews whose decision has arrived
            for entry in entries:
                record = HeldRecord.from_json(entry["record"])
                if TP(record.topic, record.partition) in actives and waited_out(record):
                    review = codec.decode(record.value)
                    if isinstance(review, ReviewSubmitted):
                        events += on_review(None, review, policy, record_time(record.timestamp))[1]
        await emitter.emit(events)

    return app
