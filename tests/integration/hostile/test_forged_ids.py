"""Forged event ids against the real pipeline, black-box: decoys written with a raw producer
and through intake, with intake, guard, approve, execute and the read models running on the
real broker and PostgreSQL. Issue 14, scenario 2: audit entries could be hidden, because
upstream chooses ``CaseOpened.event_id``, every later id was a public uuid5 of it, and the
read models deduplicated on ``event_id`` alone.

Now internal ids are keyed (HMAC under the deployment's secret), deduplication is per
(topic, event_id), and a different event under an id its topic holds already is
dead-lettered as ``event_id_collision``, with its bytes (by the read models on `cases`, by
intake for a case's opening): refused with its reason, nothing lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from console.policy_topic import publish_policy
from infra.db import database_urls
from infra.kafka import producer_config
from infra.settings import Settings
from policy.loader import load_policy_text
from projections.runner import group_id
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseUpdated,
    DeadLettered,
    Event,
    derived_event_id,
    utc_now,
)
from tests.integration.helpers import eventually, running
from tests.integration.pipeline import (
    Downstream,
    Tail,
    case_opened,
    policy_text,
    recommendation,
    send,
)
from tests.stack import Stack

# The namespace ids were derived under before they were keyed: public, in the old code.
OLD_NAMESPACE = uuid.UUID("6f1f3f5e-2b8a-4c3e-9d47-5a0c1e7b9d21")
RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
COMPONENTS = (
    *(("processors.worker", n) for n in ("intake", "guard", "approve", "execute")),
    ("projections.worker", "readmodels"),
)


def old_id(cause: str, kind: str) -> str:
    """The id the old, unkeyed scheme gave: anyone could compute it in advance."""
    return str(uuid.uuid5(OLD_NAMESPACE, f"{cause}:{kind}"))


@dataclass
class World:
    settings: Settings
    codec: Codec
    out: Tail  # dead letters, read from the beginning

    def raw(self, topic: str, event: Event) -> bytes:
        """Write ``event`` straight onto ``topic`` (past intake), as a hostile client with a
        raw producer can while the broker lets anyone in; returns the bytes written."""
        value, headers = self.codec.encode(event)
        producer = Producer(producer_config(self.settings))
        producer.produce(
            self.settings.topic(topic), key=event.case_id.encode(), value=value, headers=headers
        )
        assert producer.flush(30) == 0
        return value

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(database_urls(self.settings).app) as conn:
            return conn.execute(statement, params).fetchall()

    def audited(self, topic: str, event_id: str) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT event_type, case_id, payload FROM audit_log WHERE topic = %s AND event_id = %s",
            self.settings.topic(topic),
            event_id,
        )

    def collisions(self, source: str = "cases") -> list[DeadLettered]:
        """The dead letters for colliding ids read on ``source`` (`cases`: by the read
        models; `upstream`: by intake)."""
        return [
            d
            for d in self.out.events(DeadLettered, source_topic=self.settings.topic(source))
            if d.reason.startswith("event_id_collision")
        ]


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    settings = stack.isolated()
    codec = Codec.load()
    with Downstream() as downstream:
        publish_policy(settings, codec, load_policy_text(policy_text(downstream.url)), "tests")
        with running(settings, *COMPONENTS):
            out = Tail(settings, ("deadletter",))
            try:
                yield World(settings, codec, out)
            finally:
                out.close()


def decoy(event_id: str, n: int) -> CaseUpdated:
    return CaseUpdated(
        event_id=event_id,
        case_id="decoy-1",
        occurred_at=utc_now(),
        actor="mallory",
        changes={"n": n},
        note="a decoy carrying the id of a later real event",
    )


def test_decoys_carrying_future_ids_hide_nothing(world: World) -> None:
    # Given a case whose recommendation will run automatically (bounded_wf: reset by email)
    opened = case_opened("forge-1", "identity")
    rec = recommendation("forge-1", RESET, queue="identity")
    # ... and the ids its later events get: the test holds the deployment's key, as an
    # attacker does not; the old scheme's ids anyone could compute from upstream's own id.
    decision_id = derived_event_id(rec.event_id, "GuardrailDecided")
    requested_id = derived_event_id(decision_id, "ExecutionRequested")
    succeeded_id = derived_event_id(requested_id, "ExecutionSucceeded")
    execution_id = derived_event_id(decision_id, "execution")
    old_decision = old_id(rec.event_id, "GuardrailDecided")
    old_requested = old_id(old_decision, "ExecutionRequested")
    old = (old_decision, old_requested, old_id(old_requested, "ExecutionSucceeded"))
    assert {decision_id, requested_id, succeeded_id}.isdisjoint(old)

    # When decoys carrying every one of those ids reach the read models first, on `cases`
    # (a raw producer past intake) ...
    ids = (decision_id, requested_id, succeeded_id, *old)
    for n, event_id in enumerate(ids):
        world.raw("cases", decoy(event_id, n))
    eventually(
        lambda: all(world.audited("cases", i) for i in ids),
        timeout_s=60,
        what="the decoys in audit_log",
    )
    # ... and then the real case runs.
    send(world.settings, world.codec, [opened, rec])

    # Then the real events are all recorded, on their own topics, beside the decoys.
    eventually(
        lambda: (
            world.query("SELECT status FROM executions WHERE execution_id = %s", execution_id)
            == [("succeeded",)]
        ),
        timeout_s=90,
        what="the automatic reset's execution to succeed in the read models",
    )
    for topic, event_id, kind in (
        ("decisions", decision_id, "GuardrailDecided"),
        ("executions", requested_id, "ExecutionRequested"),
        ("executions", succeeded_id, "ExecutionSucceeded"),
    ):
        [(event_type, case_id, _)] = world.audited(topic, event_id)
        assert (event_type, case_id) == (kind, "forge-1")
        assert world.query(
            "SELECT event_type FROM case_timeline WHERE topic = %s AND event_id = %s",
            world.settings.topic(topic),
            event_id,
        ) == [(kind,)]
        # The decoy under the same id stays too, on `cases`: nothing is dropped either way.
        [(decoy_type, decoy_case, _)] = world.audited("cases", event_id)
        assert (decoy_type, decoy_case) == ("CaseUpdated", "decoy-1")
    # The decoys collided with nothing on their own topic.
    assert world.collisions() == []


def test_a_different_event_under_a_recorded_id_is_dead_lettered_and_a_redelivery_dropped(
    world: World,
) -> None:
    # Given a case opened through intake, and an update of it delivered twice (the same
    # bytes: an upstream retry) ...
    opened: CaseOpened = replace(case_opened("collide-1", "billing"), subject="the real one")
    update = CaseUpdated(
        event_id="upd-collide-1",
        case_id="collide-1",
        occurred_at=utc_now(),
        actor="crm",
        changes={"priority": "high"},
    )
    send(world.settings, world.codec, [opened, update, update])
    eventually(
        lambda: world.audited("cases", update.event_id),
        timeout_s=60,
        what="the real case in audit_log",
    )
    # ... and, through intake too, an update carrying the opening's own id: intake takes it
    # (an update of a known case), so it reaches `cases` ...
    colliding = CaseUpdated(
        event_id=opened.event_id,
        case_id="collide-1",
        occurred_at=utc_now(),
        actor="mallory",
        changes={"subject": "not the real one"},
    )
    send(world.settings, world.codec, [colliding])
    # ... a raw producer writes another CaseOpened under that id on `cases` itself ...
    forged = replace(opened, subject="forged", occurred_at=utc_now())
    forged_bytes = world.raw("cases", forged)
    # ... and another goes to intake, which remembers what opened the case.
    via_intake = replace(opened, subject="forged via intake")
    send(world.settings, world.codec, [via_intake])

    # Then both different events are dead-lettered with the reason, their bytes kept ...
    letters = world.out.wait(
        lambda: found if len(found := world.collisions()) >= 2 else None,
        timeout_s=90,
        what="the colliding events' dead letters",
    )
    colliding_bytes, _ = world.codec.encode(colliding)
    assert sorted(d.raw for d in letters) == sorted([colliding_bytes, forged_bytes])
    for letter in letters:
        assert letter.consumer == group_id(world.settings, "readmodels")
        assert letter.error_class == "EventIdCollision"
        assert opened.event_id in letter.reason
        assert world.codec.decode(letter.raw, None).event_id == opened.event_id
    [refused] = world.out.wait(
        lambda: world.collisions("upstream"), timeout_s=60, what="intake's dead letter"
    )
    assert refused.raw == world.codec.encode(via_intake)[0]
    assert refused.reason.startswith("event_id_collision: CaseOpened")
    # ... the recorded event stays the real one, everywhere ...
    [(event_type, _, payload)] = world.audited("cases", opened.event_id)
    assert event_type == "CaseOpened" and '"subject":"the real one"' in payload
    assert world.query("SELECT subject FROM case_state WHERE case_id = %s", "collide-1") == [
        ("the real one",)
    ]
    # ... and the update delivered twice is recorded once, and not dead-lettered.
    assert len(world.audited("cases", update.event_id)) == 1
    assert len(world.collisions()) == 2
    assert [
        r[0]
        for r in world.query(
            "SELECT event_type FROM case_timeline WHERE case_id = %s ORDER BY occurred_at",
            "collide-1",
        )
    ] == ["CaseOpened", "CaseUpdated"]
