"""The recommend processor: a RecommendationProduced for every CaseOpened, and again when a
CaseUpdated changes what the model reads (subject or description).

Per partition it keeps `views` (case_id -> the case as the recommender sees it, JSON) and
`done` (cause event_id -> True once its recommendation is acknowledged), so a redelivered
case event is not recommended twice. The recommendation itself is
planned by `processors.recommend.service` on the baseline memory's own thread (`History`,
which keeps the CPU-bound search off the event loop), under the policy in force
(`PolicySource`); for LLM workflows the model call is awaited on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from infra.settings import Settings
from policy.model import LlmRecommender
from processors.app import create_app, raw_topic
from processors.consume import CRASH, each_record
from processors.deadletters import DeadLetters
from processors.emitter import Emitter
from processors.policy_source import PolicySource
from processors.recommend.case_view import CaseView, apply_update, open_view, text_changed
from processors.recommend.history import History
from processors.recommend.llm import Endpoint, preload
from processors.recommend.service import ask_async, conclude, plan, route
from processors.recommend.visibility import Visibility
from processors.records import record_time
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.events import CaseOpened, CaseUpdated

log = logging.getLogger(__name__)
COMPONENT = "recommend"


def build(settings: Settings, codec: Codec) -> faust.App:
    app = create_app(settings, COMPONENT)
    cases = raw_topic(app, settings, "cases")
    dead_letters = DeadLetters(app, settings, codec, COMPONENT)
    emitter = Emitter(app, settings, codec, ["recommendations"])
    policies = PolicySource(settings, codec, dead_letters)
    policies.attach(app)
    history = History(settings, codec)
    views = app.Table("views", default=None, key_type=str)
    done = app.Table("done", default=None, key_type=str)
    key = settings.llm_api_key
    endpoint = Endpoint(
        api_base=settings.llm_api_base, api_key=key.get_secret_value() if key else None
    )

    @app.task
    async def follow_history() -> None:
        await history.follow()

    @app.task
    async def warm_llm() -> None:
        # litellm's import takes seconds: do it off the loop, once an LLM workflow exists.
        policy = await policies.current()
        if any(isinstance(w.recommender, LlmRecommender) for w in policy.policy.workflows.values()):
            await asyncio.to_thread(preload)

    async def recommend(view: CaseView, at: float) -> None:
        if done.get(view.last_event_id):
            return
        policy = await policies.current()
        index = await history.index(Visibility.from_policy(policy.policy.model_visibility))
        p = await history.run(lambda: plan(view, route(view, policy, index), policy, index))
        events = conclude(p, await ask_async(p, endpoint), record_time(at))
        await emitter.emit(events)
        done[view.last_event_id] = True

    @app.agent(cases, supervisor_strategy=CRASH)
    async def recommend_cases(stream: faust.StreamT) -> None:
        async for msg in each_record(stream, settings):
            try:
                event = codec.decode(msg.value, msg.headers)
            except CodecError:
                continue  # intake dead-letters what upstream got wrong
            before = view_from_json(views.get(event.case_id))
            if isinstance(event, CaseOpened) and before is None:
                view = open_view(event)
            elif isinstance(event, CaseUpdated) and before is not None:
                view = apply_update(before, event)
                if not text_changed(before, view):
                    views[event.case_id] = view_to_json(view)
                    continue
            else:
                continue  # resolutions teach History; nothing to recommend
            await recommend(view, msg.timestamp)
            views[event.case_id] = view_to_json(view)

    return app


def view_to_json(view: CaseView) -> dict[str, Any]:
    return {
        name: dict(value) if name in ("customer", "attributes") else value
        for name in CaseView.__dataclass_fields__
        for value in (getattr(view, name),)
    }


def view_from_json(raw: dict[str, Any] | None) -> CaseView | None:
    return None if raw is None else CaseView(**raw)
