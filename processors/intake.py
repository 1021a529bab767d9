"""The intake processor: the gate between upstream services and everything else.

Upstream services write `upstream`; intake reads it, checks that each record tells a
coherent story about its case (`intake_rules`), and re-publishes what it accepts on
`cases`, which every other component reads, with the personal data sealed under the
customer's data key (`policy.sealing`; an event without any is forwarded byte for byte).
What it refuses goes to the dead-letter topic with the reason, so nothing downstream
ever sees an unvalidated event. Its store, `cases`, remembers each case's status,
opening event and customer ref, until `state_retention_s` after the case resolved.

Upstream records must be keyed by case_id and partitioned with Kafka's default (murmur2)
partitioner, as every casegate topic is: a case's records must all arrive on one
partition, in order, for the checks (and the state behind them) to hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from infra.db import database_urls
from infra.kafka import partition_for
from infra.keys import KeyRing, Wrapping, master_key, ref_key
from infra.settings import Settings
from policy.sealing import DataKey, customer_ref, ref_of, seal_event
from processors.handler import Handler, Inbound, Step
from processors.intake_rules import UPSTREAM, KnownCase, Verdict, check, evolve
from schemas.codec import IMPORT_HEADER, Codec
from schemas.codec_errors import InvalidEvent
from schemas.events import CaseOpened

CASES = "cases"


class Keys(Protocol):
    """Where the data keys come from (`infra.keys.KeyRing`; a dict in unit tests)."""

    def keys_for(self, refs: Sequence[str]) -> Mapping[str, DataKey]: ...

    def close(self) -> None: ...


class Intake(Handler):
    component = "intake"
    inputs = {"upstream": UPSTREAM}
    stores = (CASES,)
    needs_policy = False

    def __init__(self, settings: Settings, keys: Keys, ref_key: bytes) -> None:
        self.retention_ms = round(settings.state_retention_s * 1000)
        self.max_text_chars = settings.max_text_chars
        self.clear_fields = frozenset(settings.customer_clear_fields)
        self.keys = keys
        self.ref_key = ref_key

    def _refs(self, batch: Sequence[Inbound], step: Step) -> dict[str, str]:
        """case -> customer ref for every case of the batch intake may accept: a known
        case's from the store (one opened before intake sealed: a ref of its own), a new
        one's from its opening. Events of unknown cases are refused and get no key."""
        refs: dict[str, str] = {}
        for record in batch:
            event = record.event
            if event.case_id in refs:
                continue
            raw = step.state.get(CASES, record.partition, event.case_id)
            if raw:
                known = raw.get("customer_ref")
                refs[event.case_id] = known or ref_of(self.ref_key, f"case:{event.case_id}")
            elif isinstance(event, CaseOpened):
                refs[event.case_id] = customer_ref(self.ref_key, event)
        return refs

    def handle(self, batch: Sequence[Inbound], step: Step) -> None:
        # Step 1: every key the batch needs, in one lookup (cached across batches).
        refs = self._refs(batch, step)
        keys = self.keys.keys_for(list(set(refs.values())))
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
            ref = refs[event.case_id]
            sealed = seal_event(event, keys[ref], self.clear_fields)
            if sealed is event:
                step.out.forward(record, CASES)
            else:
                step.out.emit([sealed], cause=record, carry=(IMPORT_HEADER,))
            after = evolve(before, event, ref)
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
                        "customer_ref": after.customer_ref,
                    },
                    expires_ms=(
                        round(event.occurred_at.timestamp() * 1000) + self.retention_ms
                        if resolved
                        else None
                    ),
                )

    def close(self) -> None:
        self.keys.close()


def build(settings: Settings, codec: Codec) -> Intake:
    ring = KeyRing(
        database_urls(settings).app, Wrapping(master_key(settings)), settings.data_key_cache_s
    )
    return Intake(settings, ring, ref_key(settings))
