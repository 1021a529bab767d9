"""Access control over the console's whole route table, beyond tests/integration/test_api.py:
every API route refuses a request without a valid token (401) and, where a role is needed,
a token without it (403); every page refuses a visitor without a session; operator A
cannot act as B; a revoked token stops everywhere at once; writes carry the token's
operator into the event and the audit; tokens and secrets never reach a log; hostile case
text is stored verbatim and rendered inert.

Routes are read from the app itself, so a route added later is covered (or fails the
classification test until it is placed in ANY_OPERATOR or NEEDS_A_ROLE).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from console.app import create_app
from console.auth import add_operator, form_token, revoke_operator
from console.web.session import COOKIE
from infra.db import database_urls
from infra.settings import PROJECT_ROOT, Settings
from schemas.events import CaseOpened
from tests.integration import console_story
from tests.integration.helpers import audited, casegate, console_app, eventually, running, scalar
from tests.stack import Stack

SQL = "Robert'); DROP TABLE audit_log; --"
SCRIPT = '<script>alert("x")</script><img src=x onerror=alert(1)>'
HOSTILE_CASE = CaseOpened(
    event_id="open-x1",
    case_id="x1",
    occurred_at=console_story.story().now,
    source="helpdesk",
    channel=f"mail {SCRIPT}",
    queue=f"q {SCRIPT}",
    team=f"t {SQL}",
    subject=f"{SCRIPT} {SQL}",
    description=f"Dear support, {SCRIPT}\n{SQL}",
    priority="high",
    customer={"name": SCRIPT},
    attributes={"note": SQL},
)
PUBLIC_API = {("GET", "/api/health")}  # a load balancer's probe: no case data
PUBLIC_PAGES = {("GET", "/sign-in"), ("POST", "/sign-in")}
# API routes any signed-in operator may call (what they see is filtered by their roles),
# and those that need a particular role: (operator lacking it, what it is refused).
ANY_OPERATOR = {
    ("GET", "/api/me"),
    ("GET", "/api/queue"),
    ("GET", "/api/cases/{case_id}/trace"),
    ("GET", "/api/attention"),
    ("GET", "/api/metrics"),
    ("GET", "/api/readiness"),
    ("GET", "/api/policy"),
    ("GET", "/api/rollout"),
}
NEEDS_A_ROLE = {
    ("GET", "/api/queue/{recommendation_id}"): "ann",  # an agent; r-q1 needs a supervisor
    ("POST", "/api/reviews"): "ann",
    ("POST", "/api/cases/{case_id}/reclassify"): "nobody",  # holds no role of the policy
    # Supervisors approve promotions and pull kill switches; an agent is refused.
    ("POST", "/api/rollout/proposals/{proposal_id}/approve"): "ann",
    ("POST", "/api/rollout/workflows/{workflow}/kill"): "ann",
}
PAGE_NEEDS_A_ROLE = {
    ("GET", "/queue/{recommendation_id}"): "ann",
    ("POST", "/queue/{recommendation_id}/review"): "ann",
    ("POST", "/cases/{case_id}/reclassify"): "nobody",
    ("POST", "/rollout/proposals/{proposal_id}/approve"): "ann",
    ("POST", "/rollout/workflows/{workflow}/kill"): "ann",
}
PATH_VALUES = {
    "recommendation_id": "r-q1",
    "case_id": "q1",
    "proposal_id": "p-1",
    "workflow": "billing",
}


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, its included routers' too."""

    def walk(items: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for r in items:
            if isinstance(r, APIRoute):
                for method in sorted(r.methods or ()):
                    yield method, prefix + r.path
            elif hasattr(r, "original_router"):  # FastAPI >= 0.16x keeps includes lazy
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)

    return sorted(set(walk(list(app.router.routes), "")))


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def key() -> str:
    return f"k-{uuid.uuid4()}"


BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/reviews"): {"recommendation_id": "r-q1", "verdict": "approve"},
    ("POST", "/api/cases/{case_id}/reclassify"): {"category": "plan_change", "reason": "r"},
    ("POST", "/api/rollout/workflows/{workflow}/kill"): {"reason": "broken adapter"},
}


@dataclass
class Console:
    settings: Settings
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def call(self, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        body = BODIES.get((method, path))
        if body is not None:
            body = {**body, "idempotency_key": key()}
        return self.client.request(method, concrete(path), json=body, headers=headers or {})

    def browser(self, name: str | None = None) -> TestClient:
        """A fresh cookie jar, signed in as `name` when given."""
        web = TestClient(self.app)
        if name is not None:
            answer = web.post("/sign-in", data={"token": self.tokens[name]}, follow_redirects=False)
            assert answer.status_code == 303, answer.text
        return web


def _with_cookie(console: Console, token: str) -> TestClient:
    """A browser holding a session cookie with `token` (forged, or since revoked)."""
    return TestClient(console.app, cookies={COOKIE: token})


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[Console]:
    settings = stack.isolated()
    story = console_story.story()
    events = [*story.events, HOSTILE_CASE]
    console_story.publish(settings, events)
    with running(settings, ("projections.worker", "readmodels")):
        audited(settings, events)
        tokens = console_story.add_operators(settings)
        with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
            # An operator whose only role the policy does not define (known_roles=None).
            tokens["nobody"] = add_operator(conn, "nobody", ("auditor",), None, ttl_s=3600)
            tokens["rita"] = add_operator(conn, "rita", ("supervisor",), None, ttl_s=3600)
        with console_app(settings) as app, TestClient(app) as client:
            yield Console(settings, app, client, tokens)


def _app_routes() -> list[tuple[str, str]]:
    from unittest.mock import MagicMock

    # Only the route table is read: nothing is connected.
    app = create_app(Settings(), conn_pool=MagicMock(), producer=MagicMock(), codec=MagicMock())
    return routes(app)


ALL_ROUTES = _app_routes()
API_ROUTES = [r for r in ALL_ROUTES if r[1].startswith("/api/") and r not in PUBLIC_API]
PAGE_ROUTES = [r for r in ALL_ROUTES if not r[1].startswith("/api/") and r not in PUBLIC_PAGES]


def test_every_route_is_classified() -> None:
    """A new route must be placed: public, any operator, or which role it needs."""
    api = {r for r in ALL_ROUTES if r[1].startswith("/api/")} - PUBLIC_API
    assert api == ANY_OPERATOR | set(NEEDS_A_ROLE)
    assert set(PAGE_NEEDS_A_ROLE) <= set(PAGE_ROUTES)
    assert len(PAGE_ROUTES) >= 10


def test_the_route_table_matches_the_published_api(console: Console) -> None:
    spec = console.client.get("/api/openapi.json").json()
    published = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert published == {r for r in ALL_ROUTES if r[1].startswith("/api/")}


@pytest.mark.parametrize("route", API_ROUTES, ids=" ".join)
def test_an_api_route_without_a_valid_token_is_401(
    console: Console, route: tuple[str, str]
) -> None:
    method, path = route
    signed_in = console.browser("sam")  # a session cookie does not authenticate the API
    for headers, client in (
        ({}, console.client),
        ({"Authorization": "Bearer not-a-token"}, console.client),
        ({"Authorization": f"Basic {console.tokens['sam']}"}, console.client),
        ({"Authorization": f"Bearer {console.tokens['sam']}x"}, console.client),
        ({}, signed_in),
    ):
        body = BODIES.get(route)
        answer = client.request(
            method,
            concrete(path),
            headers=headers,
            json={**body, "idempotency_key": key()} if body else None,
        )
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", sorted(NEEDS_A_ROLE), ids=" ".join)
def test_an_api_route_needing_a_role_refuses_a_token_without_it(
    console: Console, route: tuple[str, str]
) -> None:
    method, path = route
    answer = console.call(method, path, console.bearer(NEEDS_A_ROLE[route]))
    assert answer.status_code == 403, answer.text
    assert answer.json()["detail"]


@pytest.mark.parametrize("route", sorted(ANY_OPERATOR), ids=" ".join)
def test_an_api_route_for_any_operator_answers_one_without_a_policy_role(
    console: Console, route: tuple[str, str]
) -> None:
    answer = console.call(*route, console.bearer("nobody"))
    assert answer.status_code == 200, answer.text
    if route == ("GET", "/api/queue"):
        assert answer.json() == []  # nothing this operator's roles may act on


@pytest.mark.parametrize("route", PAGE_ROUTES, ids=" ".join)
def test_a_page_without_a_session_serves_nothing_but_the_way_to_sign_in(
    console: Console, route: tuple[str, str]
) -> None:
    """Pages answer a browser: 303 towards the sign-in page (their form of 401) and no
    content; the helpers that only point elsewhere ("/", "/cases") end there too."""
    method, path = route
    for web in (console.browser(), _with_cookie(console, "not-a-token")):
        answer = web.request(
            method,
            concrete(path),
            data={"form_token": "x", "verdict": "approve"} if method == "POST" else None,
        )
        assert answer.url.path == "/sign-in", answer.url
        assert answer.history and all(
            (r.status_code, r.content) == (303, b"") for r in answer.history
        )
        assert "r-q1" not in answer.text and "Refund" not in answer.text


@pytest.mark.parametrize("route", sorted(PAGE_NEEDS_A_ROLE), ids=" ".join)
def test_a_page_needing_a_role_refuses_a_session_without_it(
    console: Console, route: tuple[str, str]
) -> None:
    method, path = route
    name = PAGE_NEEDS_A_ROLE[route]
    web = console.browser(name)
    data = {
        "form_token": form_token(web.cookies[COOKIE]),
        "verdict": "approve",
        "idempotency_key": key(),
        "category": "plan_change",
        "reason": "r",
    }
    answer = web.request(
        method, concrete(path), data=data if method == "POST" else None, follow_redirects=False
    )
    assert answer.status_code == 403, answer.text


def test_operator_a_cannot_act_as_b(console: Console) -> None:
    # The body cannot name the actor or the roles; the token does.
    for forged in ({"actor": "sam"}, {"roles": ["supervisor"]}, {"operator": "sam"}):
        answer = console.client.post(
            "/api/reviews",
            headers=console.bearer("ann"),
            json={
                "recommendation_id": "r-q3",
                "verdict": "approve",
                "idempotency_key": key(),
                **forged,
            },
        )
        assert answer.status_code == 422, forged
    # B's idempotency key does not replay B's review for A.
    k = key()
    body = {
        "recommendation_id": "r-q2",
        "verdict": "reject",
        "reason": "not this",
        "idempotency_key": k,
    }
    assert (
        console.client.post("/api/reviews", json=body, headers=console.bearer("sam")).status_code
        == 202
    )
    stolen = console.client.post("/api/reviews", json=body, headers=console.bearer("fay"))
    assert stolen.status_code == 409
    # A's session cannot post a form with B's form token (nor B's with A's).
    web = console.browser("ann")
    answer = web.post(
        "/queue/r-q3/review",
        follow_redirects=False,
        data={
            "form_token": form_token(console.browser("sam").cookies[COOKIE]),
            "verdict": "approve",
            "idempotency_key": key(),
        },
    )
    assert answer.status_code == 403 and "not issued to you" in answer.text
    # Another site cannot post on the operator's behalf, even with the right token.
    answer = web.post(
        "/queue/r-q3/review",
        follow_redirects=False,
        headers={"Sec-Fetch-Site": "cross-site"},
        data={
            "form_token": form_token(web.cookies[COOKIE]),
            "verdict": "approve",
            "idempotency_key": key(),
        },
    )
    assert answer.status_code == 403


def test_every_write_carries_the_tokens_operator_into_the_event_and_the_audit(
    console: Console,
) -> None:
    review = console.client.post(
        "/api/reviews",
        headers=console.bearer("ann"),
        json={"recommendation_id": "r-q3", "verdict": "approve", "idempotency_key": key()},
    )
    assert review.status_code == 202, review.text
    reclassified = console.client.post(
        "/api/cases/x1/reclassify",
        headers=console.bearer("fay"),
        json={"category": "odd", "reason": "hostile test", "idempotency_key": key()},
    )
    assert reclassified.status_code == 202, reclassified.text
    web = console.browser("sam")
    page_write = web.post(
        "/cases/q1/reclassify",
        follow_redirects=False,
        data={
            "form_token": form_token(web.cookies[COOKIE]),
            "idempotency_key": key(),
            "category": "refund_request",
            "reason": "from the page",
        },
    )
    assert page_write.status_code == 303, page_write.text
    review_id = page_write.headers["location"].rsplit("submitted=", 1)[1]
    expected = {
        review.json()["event_id"]: ("ann", "ReviewSubmitted"),
        reclassified.json()["event_id"]: ("fay", "CaseReclassified"),
    }

    def audited_actor(event_id: str) -> str | None:
        found: str | None = scalar(
            console.settings, "SELECT actor FROM audit_log WHERE event_id = %s", event_id
        )
        return found

    for event_id, (actor, kind) in expected.items():
        eventually(
            lambda e=event_id, a=actor: audited_actor(e) == a,  # type: ignore[misc]
            timeout_s=30,
            what=f"{kind} by {actor} in audit_log",
        )
    eventually(
        lambda: (
            scalar(
                console.settings,
                "SELECT actor FROM audit_log WHERE event_type = 'CaseReclassified' "
                "AND payload::jsonb ->> 'review_id' = %s",
                review_id,
            )
            == "sam"
        ),
        timeout_s=30,
        what="the page's reclassification in audit_log",
    )


def test_a_revoked_token_stops_everywhere_at_once(console: Console) -> None:
    web = console.browser("rita")
    assert console.client.get("/api/me", headers=console.bearer("rita")).status_code == 200
    assert web.get("/queue").status_code == 200
    rita_form = form_token(web.cookies[COOKIE])
    with psycopg.connect(database_urls(console.settings).app, autocommit=True) as conn:
        revoke_operator(conn, "rita")
    for method, path in API_ROUTES:
        answer = console.call(method, path, console.bearer("rita"))
        assert answer.status_code == 401, (method, path)
    for method, path in PAGE_ROUTES:
        answer = web.request(
            method,
            concrete(path),
            data={
                "form_token": rita_form,
                "verdict": "approve",
                "idempotency_key": key(),
            }
            if method == "POST"
            else None,
        )
        # The session ends with a word why; the helper routes ("/", "/cases") pass
        # through a page that says it.
        assert answer.url.path == "/sign-in", (method, path)
        assert "token was revoked" in answer.text, (method, path)


def test_sign_out_ends_the_session_even_for_a_copied_cookie(console: Console) -> None:
    web = console.browser("sam")
    cookie = web.cookies[COOKIE]
    assert cookie != console.tokens["sam"]  # the cookie never holds the operator's token
    copied = _with_cookie(console, cookie)
    assert copied.get("/queue").url.path == "/queue"
    answer = web.post("/sign-out", data={"form_token": form_token(cookie)}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")
    assert copied.get("/queue").url.path == "/sign-in"
    # Only that session ended: the token still works, and signs in afresh.
    assert console.client.get("/api/me", headers=console.bearer("sam")).status_code == 200
    assert console.browser("sam").get("/queue").url.path == "/queue"
    # The bare token in the cookie is not a session.
    assert _with_cookie(console, console.tokens["sam"]).get("/queue").url.path == "/sign-in"


def test_an_expired_session_or_token_is_refused(console: Console) -> None:
    settings = console.settings
    with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
        token = add_operator(conn, "eve", ("supervisor",), None, ttl_s=3600)
        web = TestClient(console.app)
        assert web.post("/sign-in", data={"token": token}).url.path == "/queue"
        conn.execute(
            "UPDATE console_sessions SET expires_at = now() - interval '1 second' "
            "WHERE operator = 'eve'"
        )
        assert web.get("/queue").url.path == "/sign-in"
        assert web.post("/sign-in", data={"token": token}).url.path == "/queue"
        conn.execute(
            "UPDATE operators SET token_expires_at = now() - interval '1 second' WHERE name = 'eve'"
        )
        # The token and every session it opened stop together.
        assert web.get("/queue").url.path == "/sign-in"
        headers = {"Authorization": f"Bearer {token}"}
        assert console.client.get("/api/me", headers=headers).status_code == 401
        refused = TestClient(console.app).post("/sign-in", data={"token": token})
        assert refused.status_code == 401 and "expired" in refused.text
        # An expired operator may be issued a new token (an active one may not).
        fresh = add_operator(conn, "eve", ("supervisor",), None, ttl_s=3600)
    me = console.client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"})
    assert me.json()["operator"] == "eve"


def test_the_api_docs_load_nothing_from_another_origin(console: Console) -> None:
    page = console.client.get("/api/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        assert console.client.get(asset).status_code == 200, asset
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "http" not in csp


def test_tokens_and_secrets_never_reach_a_log(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    console.client.get("/api/me", headers=console.bearer("sam"))
    console.client.get("/api/queue", headers={"Authorization": "Bearer guess-" + "x" * 40})
    console.client.post(
        "/api/reviews",
        headers=console.bearer("fay"),
        json={"recommendation_id": "r-q2", "verdict": "approve", "idempotency_key": key()},
    )
    console.browser("fay").get("/queue")
    TestClient(console.app).post("/sign-in", data={"token": "wrong-" + console.tokens["sam"]})
    logged = caplog.text
    assert all(token not in logged for token in console.tokens.values())
    assert "guess-" not in logged
    # What the processes print: the read models' log, and the CLI an operator runs.
    up = casegate(console.settings, "topics")
    printed = up.stdout + up.stderr
    for path in (console.settings.home / "secrets").glob("*"):
        text = path.read_text().strip()
        # kafka.json: one generated password per broker principal
        for secret in json.loads(text).values() if path.suffix == ".json" else [text]:
            assert secret and secret not in printed, path.name
            for log in (PROJECT_ROOT / "test-output").glob(f"{console.settings.topic_prefix}*.log"):
                assert secret not in log.read_text(errors="replace"), log.name


def test_hostile_case_text_is_stored_verbatim_and_rendered_inert(console: Console) -> None:
    stored = scalar(console.settings, "SELECT subject FROM case_state WHERE case_id = 'x1'")
    assert stored == f"{SCRIPT} {SQL}"
    assert (
        scalar(
            console.settings,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'audit_log'",
        )
        == 1
    )  # the SQL text stayed text
    trace = console.client.get("/api/cases/x1/trace", headers=console.bearer("sam"))
    assert trace.headers["content-type"].startswith("application/json")
    assert trace.headers["x-content-type-options"] == "nosniff"
    opened = [e for e in trace.json()["events"] if e["event_type"] == "CaseOpened"]
    assert opened[0]["detail"]["description"] == HOSTILE_CASE.description
    web = console.browser("sam")
    for path in (
        "/cases/x1",
        "/metrics?by=queue",
        "/metrics?by=team",
        "/metrics?by=channel",
        "/attention",
        "/queue",
    ):
        page = web.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "script-src 'self'" in page.headers["content-security-policy"], path
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in web.get("/cases/x1").text
    assert "DROP TABLE audit_log" in web.get("/metrics?by=team").text  # shown, as text
