"""The guard processor: each RecommendationProduced gets exactly one GuardrailDecided.

It reads `recommendations` only: a recommendation carries the case's routing fields as
they were when it was made (a routing change earns a new recommendation), so the guard
keeps no case table. Its one store, `auto_runs` ("workflow|partition" -> the automatic
authorizations still inside the blast-radius window), is how the blast radius is counted
per partition (`policy.guard_rules.auto_run_limit`). The decision itself is
`policy.guard_rules.decide_guard`, at the recommendation record's time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from infra.settings import Settings
from policy.facts import CaseFacts
from processors.guard_state import AutoRuns, decide_with_runs
from processors.handler import Handler, Inbound, Step
from processors.records import record_time
from schemas.codec import Codec
from schemas.codec_errors import CodecError, InvalidEvent
from schemas.events import ModelOutputRejected, RecommendationProduced

log = logging.getLogger(__name__)
AUTO_RUNS = "auto_runs"


class Guard(Handler):
    component = "guard"
    inputs = {"recommendations": (RecommendationProduced, ModelOutputRejected)}
    stores = (AUTO_RUNS,)
    needs_policy = True

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        for record in batch:
            rec = record.event
            if isinstance(rec, RecommendationProduced):
                self._decide(record, rec, step)

    def _decide(self, record: Inbound, rec: RecommendationProduced, step: Step) -> None:
        policy = step.policy
        if policy is None:  # unreachable: the loop waits for a policy
            raise RuntimeError("guard stepped without a policy")
        case = CaseFacts.of_recommendation(rec)
        if case is None:
            step.out.reject(
                record,
                InvalidEvent(
                    f"recommendation {rec.recommendation_id} carries no routing fields: "
                    "written by a recommender older than the guard, it cannot be routed"
                ),
                rec.case_id,
            )
            return
        try:
            decision, change = decide_with_runs(
                rec,
                case,
                record.partition,
                record_time(record.timestamp),
                policy,
                step.partitions,
                lambda key: AutoRuns.from_json(step.state.get(AUTO_RUNS, record.partition, key)),
            )
            step.out.emit([decision], record)
        except (ValueError, CodecError) as exc:
            step.out.reject(record, exc, rec.case_id)
            return
        if change is not None:
            step.state.put(
                AUTO_RUNS,
                record.partition,
                change.key,
                change.runs.to_json(),
                expires_ms=change.expires_ms,
            )


def build(settings: Settings, codec: Codec) -> Guard:
    return Guard()
