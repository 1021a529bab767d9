"""The intake processor: the gate between upstream services and everything else.

Upstream services write `upstream`; intake reads it, checks that each record tells a
coherent story about its case (`intake_rules`), and re-publishes what it accepts,
byte for byte, on `cases`, which every other component reads. What it refuses goes to
the dead-letter topic with the reason, so nothing downstream ever sees an unvalidated
event. Its store, `cases`, remembers each case's status and opening event, until
`state_retention_s` after the case resolved.

Upstream records must be keyed by case_id and partitioned with Kafka's default (murmur2)
partitioner, as every casegate topic is: a case's records must all arrive on one
partition, in order, for the checks (and the state behind them) to hold.
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.kafka import partition_for
from infra.settings import Settings
from processors.handler import Handler, Inbound, Step
from processors.intake_rules import UPSTREAM, KnownCase, Verdict, check, evolve
from schemas.codec import Codec
from schemas.errors import InvalidEvent

CASES = "cases"


class Intake(Handler):
    component = "intake"
    inputs = {"upstream": UPSTREAM}
    stores = (CASES,)
    needs_policy = False

    def __init__(self, settings: Settings) -> None:
        self.retention_ms = round(settings.state_retention_s * 1000)
        self.max_text_chars = settings.max_text_chars

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        for record in batch:
            event = record.event
            expected = partition_for(record.key or b"", step.partitions)
            if record.partition != expected:
                step.out.reject(
                    record,
                    InvalidEvent(
                        f"case {event.case_id} arrived on partition {record.partition}, but "
                        f"its key belongs on partition {expected}: produce upstream records "
                        "with Kafka's default partitioner (murmur2; librdkafka: "
                        "partitioner=murmur2_random)"
                    ),
                    event.case_id,
                )
                continue
            raw = step.state.get(CASES, record.partition, event.case_id)
            before = KnownCase(**raw) if raw else None
            result = check(before, event, record.key_text, self.max_text_chars)
            if result.verdict is Verdict.REJECT:
                step.out.reject(record, InvalidEvent(result.reason), event.case_id)
                continue
            if result.verdict is Verdict.DUPLICATE:
                continue  # a redelivery upstream: the case already has it
            step.out.forward(record, CASES)
            after = evolve(before, event)
            if after is not None and after != before:
                resolved = after.status == "resolved"
                step.state.put(
                    CASES,
                    record.partition,
                    event.case_id,
                    {
                        "status": after.status,
                        "opened_event_id": after.opened_event_id,
                        "opened_digest": after.opened_digest,
                    },
                    expires_ms=(
                        round(event.occurred_at.timestamp() * 1000) + self.retention_ms
                        if resolved
                        else None
                    ),
                )


def build(settings: Settings, codec: Codec) -> Intake:
    return Intake(settings)
