"""The recommend processor: a RecommendationProduced for every CaseOpened, and again when a
CaseUpdated changes what the model reads (subject or description) or where the case is
routed (a workflow may now match, or another one).

Its store `views` holds, per case, the case as the recommender sees it (folded from its
events), kept until `state_retention_s` after the case resolved. The recommendation is
planned for the whole batch at once (`service.plan_batch`: one vectorised scoring call)
under the policy in force; LLM workflows' model calls run side by side in threads and the
plans are concluded in record order.

The memory it recommends from is learned from every partition's history, not only its
own: a follower reads `cases` and `reviews` from the beginning at start-up and keeps
reading between batches; before a batch is planned it reads to where every partition
ends then, so the memory holds every label already on the topics. Each case learns only
from labels older than itself (point-in-time, `Memory.evidence`), so a backlog, a replay
or a restart recommends as live arrival did. The model is fitted at the first batch, on
the labels older than that batch's earliest case. A policy that changes what models may
see rebuilds it from the beginning, since it holds only the text the old allowlist let
through.

History import: a case whose CaseOpened carries the `casegate_import` header
(`schemas.codec.IMPORT_HEADER`) is history: the memory learns from it, but no view is
kept and nothing is recommended for it, then or after (an imported update is never a
cause either), whatever order its records come in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Message

from infra.kafka import read_headers
from infra.settings import Settings
from policy.loader import LoadedPolicy
from processors.follow import TopicFollower
from processors.handler import Handler, Inbound, Step
from processors.intake_rules import UPSTREAM
from processors.recommend.case_view import (
    CaseView,
    apply_update,
    epoch_ms,
    open_view,
    recommendation_due,
)
from processors.recommend.llm import Endpoint, Exchange, complete
from processors.recommend.memory import Memory, freeze_heap
from processors.recommend.redacted_view import Visibility
from processors.recommend.service import Plan, conclude, plan_batch
from processors.records import record_time
from schemas.codec import Codec, CodecError, is_imported
from schemas.events import CaseOpened, CaseReopened, CaseResolved, CaseUpdated

log = logging.getLogger(__name__)
VIEWS = "views"
LLM_THREADS = 8


class Recommend(Handler):
    component = "recommend"
    inputs = {"cases": UPSTREAM}
    stores = (VIEWS,)
    needs_policy = True

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.retention_ms = round(settings.state_retention_s * 1000)
        key = settings.llm_api_key
        self.endpoint = Endpoint(
            api_base=settings.llm_api_base, api_key=key.get_secret_value() if key else None
        )
        self.memory: Memory | None = None
        self.history: TopicFollower | None = None
        self._llm = ThreadPoolExecutor(LLM_THREADS, thread_name_prefix="llm")
        self._stop = threading.Event()

    # -- the memory ---------------------------------------------------------------------

    def start(self, policy: LoadedPolicy | None, stop: threading.Event) -> None:
        self._stop = stop
        self._rebuild(_policy(policy))

    def on_turn(self, policy: LoadedPolicy | None) -> None:
        memory, history = self.memory, self.history
        if memory is None or history is None:
            return
        if memory.visibility != Visibility.from_policy(_policy(policy).policy.model_visibility):
            log.info("the policy changed what models may see: relearning the history")
            self._rebuild(_policy(policy))
            return
        history.poll(self._learn)
        memory.maintain()

    def _rebuild(self, policy: LoadedPolicy) -> None:
        if self.history is not None:
            self.history.close()
        if self.memory is not None:
            self.memory.close()
        self.memory = Memory(
            Visibility.from_policy(policy.policy.model_visibility),
            refit_after_s=self.settings.recommend_refit_after_s,
        )
        self.history = TopicFollower(self.settings, ["cases", "reviews"], "history")
        read = self.history.catch_up(self._learn, self._stop, "history")
        # Fitted at the first batch, on the labels older than its earliest case.
        freeze_heap()
        log.info("recommender memory learned from %d history records", read)

    def _learn(self, messages: list[Message]) -> None:
        memory = self.memory
        if memory is None:
            return
        for msg in messages:
            try:
                event = self.codec.decode(msg.value(), read_headers(msg))
            except CodecError:
                continue  # the processor reading that topic dead-letters it
            memory.observe(event)

    # -- records ------------------------------------------------------------------------

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        due: list[tuple[Inbound, CaseView]] = []
        for record in batch:
            view = self._fold(record, step)
            if view is not None:
                due.append((record, view))
        if not due:
            return
        memory, history = self.memory, self.history
        if memory is None or history is None:  # unreachable: start() learns first
            raise RuntimeError("recommend stepped before its memory was built")
        # Every label already on the topics is learned before these cases are planned,
        # so what a case sees does not depend on how far the follower had got.
        history.catch_up(self._learn, self._stop, "history")
        plans = plan_batch([v for _, v in due], _policy(step.policy), memory)
        asked = {
            i: self._llm.submit(complete, p.llm, p.messages, self.endpoint)
            for i, p in enumerate(plans)
            if p.llm is not None and p.messages is not None
        }
        for i, ((record, _view), plan) in enumerate(zip(due, plans, strict=True)):
            exchange: Exchange | None = asked[i].result() if i in asked else None
            self._emit(record, plan, exchange, step)

    def _fold(self, record: Inbound, step: Step) -> CaseView | None:
        """Fold the record into the case's view; the view to recommend for, if one is due."""
        event, p = record.event, record.partition
        imported = is_imported(record.headers)
        raw = step.state.entry(VIEWS, p, event.case_id)
        before = view_from_json(raw.value) if raw is not None else None
        if isinstance(event, CaseOpened) and before is None:
            if imported:
                return None  # history: no view, so nothing about it is ever recommended
            view = open_view(event)
            step.state.put(VIEWS, p, event.case_id, view_to_json(view))
            return view
        if before is None or raw is None:
            return None  # opened before the history we keep, or never: nothing to fold into
        if isinstance(event, CaseUpdated):
            view = apply_update(before, event)
            step.state.put(VIEWS, p, event.case_id, view_to_json(view), expires_ms=raw.expires_ms)
            return view if recommendation_due(before, view) and not imported else None
        if isinstance(event, CaseResolved):
            # Kept a while: a case can be reopened and updated again.
            at = epoch_ms(event.occurred_at)
            step.state.put(VIEWS, p, event.case_id, raw.value, expires_ms=at + self.retention_ms)
        elif isinstance(event, CaseReopened):
            step.state.put(VIEWS, p, event.case_id, raw.value)
        return None

    def _emit(self, record: Inbound, plan: Plan, exchange: Exchange | None, step: Step) -> None:
        try:
            step.out.emit(conclude(plan, exchange, record_time(record.timestamp)), record)
        except CodecError as exc:
            step.out.reject(record, exc, record.event.case_id)

    def close(self) -> None:
        self._llm.shutdown(wait=False, cancel_futures=True)
        if self.history is not None:
            self.history.close()
        if self.memory is not None:
            self.memory.close()


def _policy(policy: LoadedPolicy | None) -> LoadedPolicy:
    if policy is None:  # unreachable: the loop waits for a policy
        raise RuntimeError("recommend stepped without a policy")
    return policy


def view_to_json(view: CaseView) -> dict[str, Any]:
    return {
        name: dict(value) if name in ("customer", "attributes") else value
        for name in CaseView.__dataclass_fields__
        for value in (getattr(view, name),)
    }


def view_from_json(raw: dict[str, Any] | None) -> CaseView | None:
    return None if raw is None else CaseView(**raw)


def build(settings: Settings, codec: Codec) -> Recommend:
    return Recommend(settings, codec)
