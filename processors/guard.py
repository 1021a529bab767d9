"""The guard processor: each RecommendationProduced gets exactly one GuardrailDecided.

It reads `cases` and `recommendations` side by side (co-partitioned by case_id) and
keeps, per partition:
- `case_facts`: case_id -> the routing fields of its CaseOpened (the first one wins);
- `held_recommendations`: case_id -> recommendations read before their CaseOpened,
  decided when it arrives;
- `decided`: recommendation event_id -> its decision's event_id, so a redelivered or
  repeated recommendation is never decided twice;
- `auto_runs`: "workflow|partition" -> the automatic authorizations in the window.
The decision itself is `policy.guard.decide_guard`, at the recommendation record's time.
"""

from __future__ import annotations

import logging
import time

import faust

from infra.settings import Settings
from policy.facts import CaseFacts
from policy.guard import AUTO_AUTHORIZED, decide_guard
from processors.app import create_app, raw_topic
from processors.consume import CRASH, each_record
from processors.deadletters import DeadLetters
from processors.emitter import Emitter
from processors.guard_state import AutoRuns, facts_from_json, facts_to_json, runs_key
from processors.policy_source import PolicySource
from processors.records import HeldRecord, SourceRecord, record_key, record_time, where
from schemas.codec import Codec
from schemas.errors import CodecError, InvalidEvent
from schemas.events import CaseOpened, ModelOutputRejected, RecommendationProduced

log = logging.getLogger(__name__)
COMPONENT = "guard"


def build(settings: Settings, codec: Codec) -> faust.App:
    app = create_app(settings, COMPONENT)
    inputs = raw_topic(app, settings, "cases", "recommendations")
    cases_topic = settings.topic("cases")
    dead_letters = DeadLetters(app, settings, codec, COMPONENT)
    emitter = Emitter(app, settings, codec, ["decisions"])
    policies = PolicySource(settings, codec, dead_letters)
    policies.attach(app)
    facts = app.Table("case_facts", default=None, key_type=str)
    held = app.Table("held_recommendations", default=None, key_type=str)
    decided = app.Table("decided", default=None, key_type=str)
    auto_runs = app.Table("auto_runs", default=None, key_type=str)

    async def decide(
        record: SourceRecord, at: float, rec: RecommendationProduced, case: CaseFacts
    ) -> None:
        """Decide `rec` once: produce the decision, then record the run and the decision."""
        if rec.event_id in decided:
            log.info("%s: recommendation %s already decided", where(record), rec.event_id)
            return
        policy = await policies.current()
        now = record_time(at)
        workflow = policy.policy.workflow_for(case.match_fields(), rec.category)
        key = runs_key(workflow.name, record.partition) if workflow else None
        runs = AutoRuns.from_json(auto_runs.get(key) if key else None)
        try:
            decision = decide_guard(
                rec,
                case,
                policy,
                runs.times(excluding=rec.event_id),
                now,
                shards=settings.partitions,
            )
            await emitter.emit([decision])
        except (ValueError, CodecError) as exc:
            await dead_letters.reject(record, exc, rec.case_id)
            return
        if decision.outcome == AUTO_AUTHORIZED and key and workflow and workflow.blast_radius:
            auto_runs[key] = runs.add(rec.event_id, now, workflow.blast_radius.window_s).to_json()
        decided[rec.event_id] = decision.event_id

    async def on_case(msg: faust.types.Message, event: object) -> None:
        # Only CaseOpened matters here; intake judges the rest of what upstream sends.
        if not isinstance(event, CaseOpened):
            return
        if facts.get(event.case_id) is None:
            facts[event.case_id] = facts_to_json(CaseFacts.from_case_opened(event))
        case = facts_from_json(facts[event.case_id])
        for entry in held.get(event.case_id) or ():
            record = HeldRecord.from_json(entry["record"])
            try:
                rec = codec.decode(record.value)
            except CodecError as exc:  # decoded once when held; only a schema change gets here
                await dead_letters.reject(record, exc, event.case_id)
                continue
            if isinstance(rec, RecommendationProduced):
                await decide(record, record.timestamp, rec, case)
        if event.case_id in held:
            del held[event.case_id]

    async def on_recommendation(msg: faust.types.Message, event: object) -> None:
        if isinstance(event, ModelOutputRejected):
            return
        if not isinstance(event, RecommendationProduced):
            raise InvalidEvent(
                f"{type(event).__name__} does not belong on the recommendations topic"
            )
        if record_key(msg) != event.case_id:
            raise InvalidEvent(
                f"record key {record_key(msg)!r} differs from case_id "
                f"{event.case_id!r}; recommendations are keyed by case_id"
            )
        raw = facts.get(event.case_id)
        if raw is not None:
            await decide(msg, msg.timestamp, event, facts_from_json(raw))
            return
        waiting = list(held.get(event.case_id) or ())
        if event.event_id not in {entry["event_id"] for entry in waiting}:
            log.debug(
                "%s: holding recommendation %s until CaseOpened of %s arrives",
                where(msg),
                event.event_id,
                event.case_id,
            )
            record = HeldRecord.of(msg, held_at=time.time())
            waiting.append({"event_id": event.event_id, "record": record.to_json()})
            held[event.case_id] = waiting

    @app.agent(inputs, supervisor_strategy=CRASH)
    async def guard(stream: faust.StreamT) -> None:
        async for msg in each_record(stream, settings):
            try:
                event = codec.decode(msg.value, msg.headers)
                if msg.topic == cases_topic:
                    await on_case(msg, event)
                else:
                    await on_recommendation(msg, event)
            except CodecError as exc:
                await dead_letters.reject(msg, exc)

    return app
