"""The console's HTTP API and pages against the real Kafka and PostgreSQL: who may do what,
reviews as exactly one event with the token's actor, idempotency, validation, escaping."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.settings import Settings
from policy.loader import default_policy_path, load_policy_file
from policy.semantics import policy_warnings
from projections.queries import DIMENSIONS
from schemas.events import CaseReclassified, ReviewSubmitted
from tests.integration import console_story
from tests.integration.console_story import HOSTILE
from tests.integration.helpers import audited, casegate, console_app, eventually, running, scalar
from tests.stack import Stack


@dataclass
class Console:
    settings: Settings
    client: TestClient
    tokens: dict[str, str]

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def review(self, name: str, **body: Any) -> Any:
        return self.client.post("/api/reviews", json=body, headers=self.as_(name))


def key() -> str:
    return f"k-{uuid.uuid4()}"


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[Console]:
    """The story projected by the real read-model process, and the app over it in-process."""
    settings = stack.isolated()
    story = console_story.story()
    console_story.publish(settings, story.events)
    with running(settings, ("projections.worker", "readmodels")):
        audited(settings, story.events)
        tokens = console_story.add_operators(settings)
        with console_app(settings) as app, TestClient(app) as client:
            yield Console(settings, client, tokens)


def test_health_and_openapi_are_served_without_a_token(console: Console) -> None:
    health = console.client.get("/api/health")
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "checks": {"postgres": "ok", "kafka": "ok"}}
    spec = console.client.get("/api/openapi.json").json()
    assert {"/api/queue", "/api/reviews", "/api/metrics", "/api/readiness"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_missing_or_bad_token_is_401_with_a_clear_message(console: Console) -> None:
    missing = console.client.get("/api/queue")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "missing bearer token" in missing.json()["detail"]
    bad = console.client.get("/api/queue", headers={"Authorization": "Bearer not-a-token"})
    assert (bad.status_code, bad.json()["detail"]) == (401, "invalid or revoked token")
    basic = console.client.get("/api/me", headers={"Authorization": "Basic c2FtOnB3"})
    assert basic.status_code == 401


def test_the_queue_shows_only_what_the_callers_roles_may_act_on(console: Console) -> None:
    def queue(name: str) -> dict[str, dict[str, Any]]:
        answer = console.client.get("/api/queue", headers=console.as_(name))
        assert answer.status_code == 200, answer.text
        return {i["recommendation_id"]: i for i in answer.json()}

    sam, ann = queue("sam"), queue("ann")
    # r-q4 has expired; r-q3 is for agents only.
    assert set(sam) == {"r-q1", "r-q2"}
    assert set(ann) == {"r-q3"}
    q1 = sam["r-q1"]
    assert q1["recommended"] == {
        "action": "refund_payment",
        "params": {"amount": 50.0, "order_id": "ORD-17"},
        "summary": f"Refund the double charge on q1 {HOSTILE}",
    }
    assert q1["why"]["similar_cases"] == [
        {"case_id": "h1", "similarity": 0.91, "trace": "/api/cases/h1/trace"}
    ]
    assert q1["if_accepted"]["reversible"] is False
    assert q1["if_accepted"]["effects"]["customer_state"].startswith("refund issued")
    assert (q1["if_accepted"]["approvals_required"], q1["if_accepted"]["risk"]) == (2, "high")
    # Actions are filtered too: overrides only to actions the roles may approve.
    assert q1["you_may"]["override"] == ["refund_payment", "change_plan", "escalate_to_specialist"]
    assert ann["r-q3"]["you_may"]["override"] == [
        "reset_password",
        "resend_mfa_enrollment",
        "escalate_to_specialist",
    ]
    assert ann["r-q3"]["if_accepted"]["executed_by_casegate"] is False


def test_a_role_lacking_permission_gets_403_saying_why(console: Console) -> None:
    approve = console.review(
        "ann", recommendation_id="r-q1", verdict="approve", idempotency_key=key()
    )
    assert approve.status_code == 403
    assert "needs one of supervisor, finance_lead" in approve.json()["detail"]
    assert console.client.get("/api/queue/r-q1", headers=console.as_("ann")).status_code == 403
    override = console.review(
        "sam",
        recommendation_id="r-q2",
        verdict="override",
        reason="customer asked",
        override={"action": "close_account", "params": {}},
        idempotency_key=key(),
    )
    assert override.status_code == 403
    assert "needs permission account.close" in override.json()["detail"]
    expired = console.review(
        "sam", recommendation_id="r-q4", verdict="approve", idempotency_key=key()
    )
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]


def test_a_review_is_one_event_with_the_tokens_actor_even_when_replayed(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    k = key()
    body = {"recommendation_id": "r-q1", "verdict": "approve", "reason": "matches the order"}
    first = console.review("sam", **body, idempotency_key=k)
    again = console.review("sam", **body, idempotency_key=k)
    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["review_id"] == again.json()["review_id"]
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    # The body cannot name the actor.
    forged = console.review("sam", **body, idempotency_key=key(), actor="mallory")
    assert forged.status_code == 422 and forged.json()["detail"][0]["loc"] == ["body", "actor"]
    # The same key for another request, or by another operator, is refused.
    other = console.review("sam", **{**body, "verdict": "reject"}, idempotency_key=k)
    assert other.status_code == 409 and "already used" in other.json()["detail"]
    assert console.review("fay", **body, idempotency_key=k).status_code == 409

    mine = [
        e
        for e in console_story.read_all(console.settings, "reviews")
        if isinstance(e, ReviewSubmitted) and e.idempotency_key == k
    ]
    assert len(mine) == 1
    event = mine[0]
    assert (event.actor, event.roles, event.verdict, event.case_id) == (
        "sam",
        ("supervisor",),
        "approve",
        "q1",
    )
    assert event.review_id == first.json()["review_id"]
    assert event.event_id == first.json()["event_id"]
    assert (event.causation_id, event.correlation_id) == ("gd-r-q1", "open-q1")
    assert all(t not in caplog.text for t in console.tokens.values())
    # The review reaches the case's trace through the read models.
    eventually(
        lambda: any(
            e["event_type"] == "ReviewSubmitted" and e["actor"] == "sam"
            for e in console.client.get("/api/cases/q1/trace", headers=console.as_("sam")).json()[
                "events"
            ]
        ),
        timeout_s=30,
        what="the review in the trace",
    )


def test_concurrent_requests_with_one_key_produce_one_event(console: Console) -> None:
    k = key()
    body = {"recommendation_id": "r-q2", "verdict": "approve", "idempotency_key": k}
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: console.review("fay", **body), range(4)))
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["review_id"] for a in answers}) == 1
    assert sorted(a.json()["replayed"] for a in answers) == [False, True, True, True]
    produced = [
        e
        for e in console_story.read_all(console.settings, "reviews")
        if isinstance(e, ReviewSubmitted) and e.idempotency_key == k
    ]
    assert [(e.actor, e.recommendation_id) for e in produced] == [("fay", "r-q2")]


def test_reclassify_records_the_actor_and_corrects_the_case(console: Console) -> None:
    k = key()
    answer = console.client.post(
        "/api/cases/q2/reclassify",
        json={"category": "plan_change", "reason": "not a double charge", "idempotency_key": k},
        headers=console.as_("ann"),
    )
    assert answer.status_code == 202, answer.text
    events = [
        e
        for e in console_story.read_all(console.settings, "reviews")
        if isinstance(e, CaseReclassified) and e.review_id == answer.json()["review_id"]
    ]
    assert [(e.actor, e.roles, e.category, e.case_id) for e in events] == [
        ("ann", ("agent",), "plan_change", "q2")
    ]
    eventually(
        lambda: scalar(
            console.settings,
            "SELECT reclassified AND issue_class = 'plan_change' FROM case_state "
            "WHERE case_id = %s",
            "q2",
        ),
        timeout_s=30,
        what="q2 reclassified in case_state",
    )
    missing = console.client.post(
        "/api/cases/nope/reclassify",
        json={"category": "x", "reason": "r", "idempotency_key": key()},
        headers=console.as_("ann"),
    )
    assert missing.status_code == 404


def test_validation_errors_are_422_naming_the_field(console: Console) -> None:
    def loc(answer: Any) -> list[list[Any]]:
        assert answer.status_code == 422, answer.text
        return [d["loc"] for d in answer.json()["detail"]]

    assert loc(
        console.review("sam", recommendation_id="r-q2", verdict="maybe", idempotency_key=key())
    ) == [["body", "verdict"]]
    no_reason = console.review(
        "sam", recommendation_id="r-q2", verdict="reject", idempotency_key=key()
    )
    assert loc(no_reason) == [["body", "reason"]]
    assert "body.reason: a reason is required to reject" in no_reason.json()["message"]
    assert loc(
        console.review("sam", recommendation_id="r-q2", verdict="approve", idempotency_key="x")
    ) == [["body", "idempotency_key"]]
    out_of_bounds = console.review(
        "sam",
        recommendation_id="r-q2",
        verdict="override",
        reason="bigger refund",
        override={"action": "refund_payment", "params": {"amount": 900.0, "order_id": "ORD-1"}},
        idempotency_key=key(),
    )
    assert loc(out_of_bounds) == [["body", "override"]]
    assert "above the catalog max" in out_of_bounds.json()["message"]
    by = console.client.get("/api/metrics?by=colour", headers=console.as_("sam"))
    assert loc(by) == [["query", "by", 0]]


def test_operators_cli_issues_lists_and_revokes_tokens_at_once(console: Console) -> None:
    added = casegate(console.settings, "operators", "add", "rita", "--roles", "supervisor,agent")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) >= 40 and "\n" not in token
    me = console.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {"operator": "rita", "roles": ["supervisor", "agent"]}
    listed = casegate(console.settings, "operators", "list")
    assert "rita" in listed.stdout and "active" in listed.stdout and token not in listed.stdout
    assert (
        scalar(console.settings, "SELECT count(*) FROM operators WHERE token_sha256 = %s", token)
        == 0
    )
    bad_role = casegate(console.settings, "operators", "add", "tim", "--roles", "wizard")
    assert bad_role.returncode == 1 and "unknown role(s) wizard" in bad_role.stderr
    revoked = casegate(console.settings, "operators", "revoke", "rita")
    assert revoked.returncode == 0, revoked.stderr
    after = console.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert (after.status_code, after.json()["detail"]) == (401, "invalid or revoked token")


def test_trace_metrics_readiness_policy_and_attention(console: Console) -> None:
    sam = console.as_("sam")
    shadow = console.client.get("/api/cases/s1/trace", headers=sam).json()
    assert shadow["ai_output_hidden"] is True
    hidden = [e for e in shadow["events"] if e["event_type"] == "RecommendationProduced"]
    assert hidden and hidden[0]["detail"] is None and "hidden" in hidden[0]["summary"]
    assert console.client.get("/api/cases/nope/trace", headers=sam).status_code == 404

    for dim in DIMENSIONS:
        rows = console.client.get(f"/api/metrics?by={dim}", headers=sam)
        assert rows.status_code == 200 and rows.json(), dim
    billing = {
        r["workflow"]: r for r in console.client.get("/api/metrics?by=workflow", headers=sam).json()
    }["billing"]
    assert (billing["accepted"], billing["reviewed"], billing["denied"]) == (2, 2, 1)

    ready = {r["workflow"]: r for r in console.client.get("/api/readiness", headers=sam).json()}
    assert set(ready) == {"identity_access", "billing", "shipping"}
    assert ready["billing"]["sample"] == 2 and ready["billing"]["ready"] is False
    # Accepted 2 of 2, but the one execution failed: the error rate fails its threshold.
    assert ready["billing"]["verdict"] == "not ready: error rate outside the threshold"

    policy = console.client.get("/api/policy", headers=sam).json()
    assert policy["version"] == "2026.11.1" and policy["workflows"]["billing"] == "assisted"

    attention = console.client.get("/api/attention", headers=sam).json()
    assert [x["execution_id"] for x in attention["failed_executions"]] == ["x-f1"]
    assert attention["failed_executions"][0]["timed_out"] is True
    assert [(d["kind"], d["case_id"]) for d in attention["denials"]] == [("guard", "d1")]


def test_pages_escape_case_text_and_guard_their_forms(console: Console) -> None:
    web = TestClient(console.client.app)
    signed = web.post("/sign-in", data={"token": console.tokens["sam"]}, follow_redirects=False)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    for path in ("/queue", "/queue/r-q1", "/cases/q1"):
        page = web.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text, path
        assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in page.text, path
        assert "script-src 'self'" in page.headers["content-security-policy"]
    forged = web.post(
        "/queue/r-q2/review",
        data={"verdict": "approve", "idempotency_key": key(), "form_token": "guess"},
    )
    assert forged.status_code == 403 and "form has expired" in forged.text
    anonymous = TestClient(console.client.app).get("/queue", follow_redirects=False)
    assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/sign-in")


def test_the_policy_in_force_lists_its_ineffective_settings_and_the_metrics_page_shows_them(
    console: Console,
) -> None:
    expected = [
        str(w)
        for w in policy_warnings(
            load_policy_file(default_policy_path()).policy, console.settings.partitions
        )
    ]
    assert expected, "the story's policy should have a warning on this stack"

    policy = console.client.get("/api/policy", headers=console.as_("sam")).json()
    web = TestClient(console.client.app)
    web.post("/sign-in", data={"token": console.tokens["sam"]}, follow_redirects=False)
    page = web.get("/metrics")

    assert policy["warnings"] == expected
    assert page.status_code == 200 and 'id="policy-warnings"' in page.text
    assert "blast_radius.max_auto_runs" in page.text
