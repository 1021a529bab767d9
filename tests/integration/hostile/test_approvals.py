"""Hostile operators and a hostile client against the approval path, black-box: through
the HTTP API and a raw producer, with the guard, approve, execute and read-model
processes running on the real broker and PostgreSQL. Issue 14, scenarios 1, 3 and 4:
each ends in a refusal with its reason, and nothing real is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from console.auth import add_operator
from console.policy_topic import publish_policy
from infra.db import database_urls
from infra.settings import Settings
from policy.loader import load_policy_text
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseResolved,
    ExecutionRequested,
    ReviewSubmitted,
    action_digest,
    utc_now,
)
from tests.integration.helpers import console_app, eventually, running
from tests.integration.pipeline import Downstream, policy_text, recommendation, routing, send
from tests.stack import Stack

ROLES = ("agent", "supervisor", "finance_lead", "admin")
OPERATORS = {"sam": ("supervisor",), "kim": ("supervisor",), "fay": ("finance_lead",)}


@dataclass
class World:
    settings: Settings
    client: TestClient
    tokens: dict[str, str]
    downstream: Downstream
    codec: Codec

    def get(self, who: str, path: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[who]}"})

    def review(self, who: str, **body: Any) -> Any:
        body.setdefault("idempotency_key", f"k-{uuid.uuid4()}")
        return self.client.post(
            "/api/reviews", json=body, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )

    def approve(self, who: str, rec_id: str, params_hash: str) -> Any:
        """`who` approves `rec_id` as shown with `params_hash`, under the test policy."""
        return self.review(
            who,
            recommendation_id=rec_id,
            verdict="approve",
            params_hash=params_hash,
            policy_version="test.1",
        )

    def fact(self, rec_id: str, column: str) -> Any:
        with psycopg.connect(database_urls(self.settings).app) as conn:
            row = conn.execute(
                sql.SQL("SELECT {} FROM recommendation_facts WHERE recommendation_id = %s").format(
                    sql.Identifier(column)
                ),
                (rec_id,),
            ).fetchone()
        return row[0] if row else None

    def item(self, who: str, rec_id: str, check: Any = bool) -> dict[str, Any]:
        """The queue item as `who` sees it, once `check` holds for it."""

        def probe() -> dict[str, Any] | None:
            answer = self.get(who, f"/api/queue/{rec_id}")
            body = answer.json() if answer.status_code == 200 else None
            return body if body is not None and check(body) else None

        return eventually(probe, timeout_s=60, what=f"{rec_id} in {who}'s queue")


def opened(case_id: str, order_id: str) -> CaseOpened:
    return CaseOpened(
        event_id=f"opened-{case_id}",
        case_id=case_id,
        occurred_at=utc_now(),
        source="crm",
        channel="email",
        queue="billing",
        team="tier1",
        subject=f"case {case_id}",
        description="a hostile-operator test",
        priority="normal",
        customer={},
        attributes={"order_id": order_id},
    )


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    settings = stack.isolated()
    codec = Codec.load()
    with Downstream() as downstream:
        # The refund's order is a fact of the case: bound to it, never typed by an operator.
        text = policy_text(downstream.url).replace(
            "order_id: {type: string, pattern: 'ORD-\\d+', max_length: 32}",
            "order_id: {type: string, pattern: 'ORD-\\d+', max_length: 32, "
            "from_case: attributes.order_id}",
            1,
        )
        assert "from_case: attributes.order_id" in text
        publish_policy(settings, codec, load_policy_text(text), "tests")
        with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
            tokens = {n: add_operator(conn, n, r, ROLES, ttl_s=3600) for n, r in OPERATORS.items()}
        names = ("intake", "guard", "approve", "execute")
        with (
            running(
                settings,
                *(("processors.worker", n) for n in names),
                ("projections.worker", "readmodels"),
            ),
            console_app(settings, codec) as app,
            TestClient(app) as client,
        ):
            yield World(settings, client, tokens, downstream, codec)


def proposed(world: World, case_id: str, action: ActionSpec) -> str:
    """A case opened and a recommendation of `action` for it; its recommendation id."""
    rec = replace(
        recommendation(case_id, action, queue="billing"),
        routing=routing("billing"),
        case_bound={"attributes.order_id": "ORD-1"},
    )
    send(world.settings, world.codec, [opened(case_id, "ORD-1"), rec])
    return rec.recommendation_id


def test_an_override_is_what_the_queue_shows_and_what_its_approvers_approve(world: World) -> None:
    ai = ActionSpec(name="refund_payment", params={"amount": 20.0, "order_id": "ORD-1"})
    rec_id = proposed(world, "hostile-override", ai)
    first = world.item("fay", rec_id)
    assert first["recommended"]["params"] == ai.params
    assert first["params_hash"] == action_digest(ai)

    # sam overrides: a bigger refund to an order the case never named.
    forged = {"action": "refund_payment", "params": {"amount": 200.0, "order_id": "ORD-777"}}
    answer = world.review(
        "sam",
        recommendation_id=rec_id,
        verdict="override",
        reason="customer asked for more",
        override=forged,
    )
    assert answer.status_code < 300, answer.text

    # The queue shows the override, with the case's order, and who proposed it.
    bound = ActionSpec(name="refund_payment", params={"amount": 200.0, "order_id": "ORD-1"})
    shown = world.item("fay", rec_id, lambda b: b["proposed_by"] == "sam")
    assert shown["recommended"]["params"] == bound.params
    assert shown["params_hash"] == action_digest(bound)
    assert shown["if_accepted"]["approvals_received"] == 0

    # fay approving what she saw before the override: refused by the console...
    stale = world.approve("fay", rec_id, first["params_hash"])
    assert stale.status_code == 409 and "reload" in stale.json()["detail"], stale.text
    # ...and by the approve processor, when a client goes around the console.
    raw = ReviewSubmitted(
        event_id=f"raw-{uuid.uuid4()}",
        case_id="hostile-override",
        occurred_at=utc_now(),
        review_id=f"raw-{uuid.uuid4()}",
        recommendation_id=rec_id,
        actor="fay",
        roles=("finance_lead",),
        verdict="approve",
        action_name="refund_payment",
        params_hash=first["params_hash"],
        policy_version="test.1",
    )
    send(world.settings, world.codec, [raw])
    eventually(lambda: world.fact(rec_id, "reviews_denied") == 1, what="the stale review denied")

    # The proposer may not approve their own override.
    own = world.approve("sam", rec_id, shown["params_hash"])
    assert own.status_code == 403, own.text

    for who in ("fay", "kim"):
        ok = world.approve(who, rec_id, shown["params_hash"])
        assert ok.status_code < 300, ok.text
        if who == "fay":
            world.item("kim", rec_id, lambda b: b["if_accepted"]["approvals_received"] == 1)

    # What ran is what the two approvers saw: 200 to the case's own order.
    [call] = eventually(
        lambda: world.downstream.calls_for("hostile-override"), what="the refund downstream"
    )
    assert call.body["action"] == "refund_payment"
    assert call.body["params"] == {"amount": 200.0, "order_id": "ORD-1"}


def test_a_resolved_case_closes_its_item_so_nothing_is_paid_twice(world: World) -> None:
    plan = ActionSpec(name="change_plan", params={"plan": "pro"})
    rec_id = proposed(world, "hostile-resolved", plan)
    item = world.item("sam", rec_id)
    resolved = CaseResolved(
        event_id="resolved-hostile",
        case_id="hostile-resolved",
        occurred_at=utc_now(),
        resolved_by="agent-7",
        resolution_code="done_by_hand",
        category="billing",
        actions_taken=(plan,),
    )
    send(world.settings, world.codec, [resolved])

    eventually(lambda: world.fact(rec_id, "review_status") == "closed", what="the item closed")
    late = world.approve("sam", rec_id, item["params_hash"])
    assert late.status_code == 409, late.text


def test_a_run_naming_no_workflow_is_refused_by_the_executor(world: World) -> None:
    request = ExecutionRequested(
        event_id=f"forged-{uuid.uuid4()}",
        case_id="hostile-exec",
        occurred_at=utc_now(),
        execution_id="forged-exec-1",
        recommendation_id="none",
        action=ActionSpec(name="close_account"),
        mode="approved",
        requested_by="mallory",
        policy_version="test.1",
        workflow=None,
    )
    send(world.settings, world.codec, [request])

    def refused() -> tuple[str, str] | None:
        with psycopg.connect(database_urls(world.settings).app) as conn:
            row = conn.execute(
                "SELECT status, message FROM executions WHERE execution_id = 'forged-exec-1'"
            ).fetchone()
        return (row[0], row[1]) if row and row[0] != "requested" else None

    status, message = eventually(refused, what="the forged run refused")
    assert status == "failed" and message.startswith("no_workflow"), message
