"""The approve processor: the approval queue between the guard and the executor.

It reads `decisions` and `reviews` side by side (co-partitioned by case_id) and keeps,
per partition:
- `items`: recommendation_id -> its queue item (`approve_rules.Pending`), kept after it
  closes (for `state_retention_s`) so that late reviews are refused, or a marker for a
  decision that opened no item (a review of it is refused at once). A pending item's
  timer is its expiry;
- `by_case`: case_id -> the recommendation ids of its items, so that a `CaseResolved`
  (read from `cases`) closes every open item of its case; once resolved, the resolution
  itself (until a `CaseReopened`), so that an item whose decision is read after the case
  resolved (the streams are read side by side) closes as it opens, with the same
  `ApprovalCompleted` (closed, `case_resolved: …`);
- `waiting`: recommendation_id -> reviews read before the decision they answer (the
  console can show an item before this processor has read its decision), handled when
  it arrives, or refused as `unknown_item` once they waited `review_wait_s` (their timer).
The rules are `approve_rules`; each input is handled at its record's time, a timer at the
instant it was due, so the same input always yields the same events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from infra.settings import Settings
from policy.loader import LoadedPolicy
from processors.approve_rules import (
    PENDING,
    Pending,
    on_case_resolved,
    on_decision,
    on_expired,
    on_policy,
    on_review,
    on_tick,
)
from processors.approve_state import item_from_json, item_to_json, no_item
from processors.handler import Handler, Inbound, Record, Step
from processors.intake_rules import UPSTREAM
from processors.records import HeldRecord, record_time
from processors.store import Due
from schemas.codec import Codec
from schemas.codec_errors import CodecError
from schemas.events import (
    ApprovalCompleted,
    ApprovalExpired,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    GuardrailDecided,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
)
from schemas.jsonform import from_json, to_json

log = logging.getLogger(__name__)
ITEMS, WAITING, BY_CASE = "items", "waiting", "by_case"
RESOLVED = "resolved"  # a `by_case` entry of a resolved case: {"resolved": its CaseResolved}
UNKNOWN_ITEM = "unknown_item"


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


class Approve(Handler):
    component = "approve"
    inputs = {
        "decisions": (
            GuardrailDecided,
            ReviewRecorded,
            ReviewDenied,
            ApprovalCompleted,
            ApprovalExpired,
        ),
        "reviews": (ReviewSubmitted, CaseReclassified),
        # Only resolutions matter here: they close the case's open items.
        "cases": UPSTREAM,
    }
    stores = (ITEMS, WAITING, BY_CASE)
    needs_policy = True
    timed = {ITEMS: "approvals"}  # a pending item's timer is its expiry

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.codec = codec
        self.retention_ms = round(settings.state_retention_s * 1000)
        self.wait_ms = round(settings.review_wait_s * 1000)

    # -- records ------------------------------------------------------------------------

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        for record in batch:
            try:
                if record.stream == "decisions":
                    self._on_decision_topic(record, step)
                elif isinstance(record.event, CaseResolved):
                    self._on_resolved(record, record.event, step)
                elif isinstance(record.event, CaseReopened):
                    self._on_reopened(record, step)
                elif isinstance(record.event, ReviewSubmitted):
                    self._on_review(record, record.event, step)
                # CaseReclassified: the read models and the recommender use it; not the queue.
            except (CodecError, ValueError) as exc:
                step.out.reject(record, exc, record.event.case_id)

    def _on_decision_topic(self, record: Inbound, step: Step) -> None:
        event = record.event
        p = record.partition
        at = record_time(record.timestamp)
        if isinstance(event, GuardrailDecided):
            item = self._item(step, p, event.recommendation_id)
            # At the decision's own time, not its record's: an automatic run's request must
            # come out the same whichever copy of the decision is read.
            after, events = on_decision(event, event.occurred_at, item)
            if after is not item and step.policy is not None:
                # Decided under an earlier policy: the one in force may have withdrawn the
                # action since, and then the item closes as it opens.
                after, closing = on_policy(after, step.policy, at)
                events = [*events, *closing]
            resolution = self._resolution(step, p, event.case_id) if item is None else None
            if after is not None and resolution is not None:
                # The case was resolved before this decision was read: nothing to approve.
                after, closing = on_case_resolved(after, resolution)
                events = [*events, *closing]
            step.out.emit(events, record)
            self._store(step, p, item, after, at)
            if after is not None and item is None and resolution is None:
                self._index(step, p, after.case_id, after.recommendation_id, at)
            if after is None and step.state.entry(ITEMS, p, event.recommendation_id) is None:
                step.state.put(
                    ITEMS,
                    p,
                    event.recommendation_id,
                    no_item(event.outcome, p),
                    expires_ms=_ms(at) + self.retention_ms,
                )
            self._release_waiting(event.recommendation_id, p, step)
        elif isinstance(event, ApprovalExpired):
            item = self._item(step, p, event.recommendation_id)
            self._store(step, p, item, on_expired(item, event), at)
        elif isinstance(event, ReviewDenied) and event.reason == UNKNOWN_ITEM:
            self._forget_waiting(event, p, step)

    def _on_resolved(self, record: Inbound, resolved: CaseResolved, step: Step) -> None:
        p = record.partition
        at = record_time(record.timestamp)
        indexed = step.state.get(BY_CASE, p, resolved.case_id)
        for recommendation_id in indexed if isinstance(indexed, list) else ():
            item = self._item(step, p, recommendation_id)
            after, events = on_case_resolved(item, resolved)
            step.out.emit(events, record)
            self._store(step, p, item, after, at)
        step.state.put(
            BY_CASE,
            p,
            resolved.case_id,
            {RESOLVED: to_json(resolved, self.codec)},
            expires_ms=_ms(at) + self.retention_ms,
        )

    def _on_reopened(self, record: Inbound, step: Step) -> None:
        """Open again: its next items are for operators to review."""
        if isinstance(step.state.get(BY_CASE, record.partition, record.event.case_id), dict):
            step.state.delete(BY_CASE, record.partition, record.event.case_id)

    def _resolution(self, step: Step, p: int, case_id: str) -> CaseResolved | None:
        """The resolution of a case resolved (and not reopened) already, if any."""
        marker = step.state.get(BY_CASE, p, case_id)
        if not isinstance(marker, dict):
            return None
        event = from_json(marker[RESOLVED], self.codec)
        return event if isinstance(event, CaseResolved) else None

    def _index(
        self, step: Step, p: int, case_id: str, recommendation_id: str, at: datetime
    ) -> None:
        indexed = step.state.get(BY_CASE, p, case_id)
        ids = list(indexed) if isinstance(indexed, list) else []
        if recommendation_id not in ids:
            ids.append(recommendation_id)
        # Kept as long as a closed item is, so a late resolution still finds open ones.
        step.state.put(BY_CASE, p, case_id, ids, expires_ms=_ms(at) + self.retention_ms)

    def _on_review(self, record: Inbound, review: ReviewSubmitted, step: Step) -> None:
        p = record.partition
        if step.state.entry(ITEMS, p, review.recommendation_id) is not None:
            self._apply_review(review, record, p, step)
            return
        entries: list[dict[str, Any]] = list(
            step.state.get(WAITING, p, review.recommendation_id) or ()
        )
        if review.event_id in {e["event_id"] for e in entries}:
            return
        log.debug(
            "%s: review %s waits for the decision on recommendation %s",
            record.where,
            review.review_id,
            review.recommendation_id,
        )
        held = HeldRecord.of(record, held_at=step.now.timestamp())
        entries.append(
            {"event_id": review.event_id, "review_id": review.review_id, "record": held.to_json()}
        )
        self._put_waiting(step, p, review.recommendation_id, entries)

    def _apply_review(self, review: ReviewSubmitted, cause: Record, p: int, step: Step) -> None:
        """One review against its item (None: refused as unknown), at its record's time."""
        item = self._item(step, p, review.recommendation_id)
        at = record_time(cause.timestamp)
        after, events = on_review(item, review, self._policy(step), at)
        step.out.emit(events, cause)
        self._store(step, p, item, after, at)

    def _release_waiting(self, recommendation_id: str, p: int, step: Step) -> None:
        """The decision is in: handle the reviews that waited for it, in their order."""
        entries = step.state.get(WAITING, p, recommendation_id)
        if not entries:
            return
        for entry in entries:
            held = HeldRecord.from_json(entry["record"])
            review = self.codec.decode(held.value)
            if not isinstance(review, ReviewSubmitted):
                continue
            if self._waited_out(held, step.now):
                # The timer may already have refused it: refuse it the same way.
                self._refuse(review, held, step)
            else:
                self._apply_review(review, held.as_record(), p, step)
        step.state.delete(WAITING, p, recommendation_id)

    def _forget_waiting(self, denied: ReviewDenied, p: int, step: Step) -> None:
        """A refusal of a waiting review is read back: it waits no more."""
        key = denied.recommendation_id or ""
        entries = step.state.get(WAITING, p, key) or []
        kept = [e for e in entries if e["review_id"] != denied.review_id]
        if len(kept) != len(entries):
            self._put_waiting(step, p, key, kept)

    # -- timers -------------------------------------------------------------------------

    def on_due(self, due: Sequence[Due], step: Step) -> None:
        """Expire open items at their expiry; refuse reviews that waited out their decision."""
        for d in due:
            if d.store == ITEMS:
                item = item_from_json(d.entry.value)
                if item is not None and item.status == PENDING:
                    # At its expiry instant, so every tick that sees it produces the same event.
                    after, events = on_tick(item, item.expires_at)
                    step.out.emit(events)
                    self._store(step, d.partition, item, after, item.expires_at)
            elif d.store == WAITING:
                self._expire_waiting(d, step)

    def on_policy(self, timed: Sequence[Due], step: Step) -> None:
        """Close the open items whose action the new policy withdrew."""
        if step.policy is None:
            return
        for d in timed:
            item = item_from_json(d.entry.value) if d.store == ITEMS else None
            if item is not None and item.status == PENDING:
                after, events = on_policy(item, step.policy, step.now)
                step.out.emit(events)
                self._store(step, d.partition, item, after, step.now)

    def _expire_waiting(self, d: Due, step: Step) -> None:
        if step.state.entry(ITEMS, d.partition, d.key) is not None:
            return  # its decision arrived; the records path handles the reviews
        kept = []
        for entry in d.entry.value:
            held = HeldRecord.from_json(entry["record"])
            review = self.codec.decode(held.value)
            if self._waited_out(held, step.now) and isinstance(review, ReviewSubmitted):
                self._refuse(review, held, step)
            else:
                kept.append(entry)
        self._put_waiting(step, d.partition, d.key, kept)

    # -- state --------------------------------------------------------------------------

    def _item(self, step: Step, p: int, recommendation_id: str) -> Pending | None:
        return item_from_json(step.state.get(ITEMS, p, recommendation_id))

    def _store(
        self, step: Step, p: int, before: Pending | None, after: Pending | None, at: datetime
    ) -> None:
        """Keep the item: a pending one with its expiry as timer, a closed one for the
        retention period, so that a late review is refused as closed."""
        if after is None or after == before:
            return
        if after.status == PENDING:
            step.state.put(
                ITEMS,
                p,
                after.recommendation_id,
                item_to_json(after, p),
                due_ms=_ms(after.expires_at),
            )
        else:
            step.state.put(
                ITEMS,
                p,
                after.recommendation_id,
                item_to_json(after, p),
                expires_ms=_ms(at) + self.retention_ms,
            )

    def _put_waiting(self, step: Step, p: int, key: str, entries: list[dict[str, Any]]) -> None:
        if not entries:
            step.state.delete(WAITING, p, key)
            return
        first = min(e["record"]["held_at"] for e in entries)
        step.state.put(WAITING, p, key, entries, due_ms=round(first * 1000) + self.wait_ms)

    def _waited_out(self, held: HeldRecord, now: datetime) -> bool:
        return now.timestamp() * 1000 >= held.held_at * 1000 + self.wait_ms

    def _refuse(self, review: ReviewSubmitted, held: HeldRecord, step: Step) -> None:
        _, events = on_review(None, review, self._policy(step), record_time(held.timestamp))
        step.out.emit(events, held.as_record())

    @staticmethod
    def _policy(step: Step) -> LoadedPolicy:
        if step.policy is None:  # unreachable: the loop waits for a policy
            raise RuntimeError("approve stepped without a policy")
        return step.policy


def build(settings: Settings, codec: Codec) -> Approve:
    return Approve(settings, codec)
