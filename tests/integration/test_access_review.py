"""The access review on the real broker and database (issue 15, deliverable 4).

Given the console story projected by the read models (sam and fay approved a refund, a
high-risk action needing two approvers; sam alone approved a plan change) and operators
who used their tokens or not, when `casegate report access` runs, then each operator's
last use, the unused flag and their high-impact approvals are right; recording the review
puts an AccessReviewed event in the audit log; and revoking a token stops it on the very
next request, bearer or session cookie.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app as cli_app
from console.auth import add_operator
from infra.db import database_urls
from infra.settings import Settings
from tests.integration import console_story
from tests.integration.helpers import audited, console_app, eventually, running, scalar, signed_in
from tests.stack import env_for


@pytest.fixture
def console(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    story = console_story.story()
    console_story.publish(settings, story.events)
    with running(settings, ("projections.worker", "readmodels")):
        audited(settings, story.events)
        tokens = console_story.add_operators(settings)  # sam, fay, ann
        with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
            tokens["old"] = add_operator(conn, "old", ("supervisor",), None, ttl_s=90 * 86400)
            # Issued three weeks ago and never used since: past the 14-day default.
            conn.execute(
                "UPDATE operators SET created_at = now() - interval '21 days' WHERE name = 'old'"
            )
        with console_app(settings) as app, TestClient(app) as client:
            yield client, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_access_review_lists_last_use_flags_and_high_impact_approvals(
    settings: Settings, console: tuple[TestClient, dict[str, str]]
) -> None:
    client, tokens = console
    cli, env = CliRunner(), env_for(settings)
    last_used = "SELECT last_used_at FROM operators WHERE name = %s"

    assert client.get("/api/me", headers=bearer(tokens["sam"])).status_code == 200
    first = scalar(settings, last_used, "sam")
    assert first is not None
    assert client.get("/api/me", headers=bearer(tokens["sam"])).status_code == 200
    # Within the minute a second request writes nothing.
    assert scalar(settings, last_used, "sam") == first
    assert signed_in(client.app, tokens["fay"]).get("/queue").status_code == 200
    assert scalar(settings, last_used, "fay") is not None

    result = cli.invoke(cli_app, ["report", "access", "--since", "7d", "--json"], env=env)

    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert sorted(rows) == ["ann", "fay", "old", "sam"]
    impact = {
        n: [(a["case_id"], a["action"]) for a in r["high_impact_approvals"]]
        for n, r in rows.items()
    }
    # The plan change sam approved on f1 is medium risk with one approver: not high impact.
    assert impact == {
        "ann": [],
        "fay": [("h1", "refund_payment")],
        "old": [],
        "sam": [("h1", "refund_payment")],
    }
    assert rows["sam"]["last_used_at"] is not None and rows["ann"]["last_used_at"] is None
    assert {n for n, r in rows.items() if r["unused"]} == {"old"}  # ann's token is new
    assert rows["sam"]["roles"] == ["supervisor"] and rows["sam"]["status"] == "active"

    recorded = cli.invoke(
        cli_app,
        ["report", "access", "--since", "7d", "--record", "--reviewer", "ciso", "--note", "old"],
        env=env,
    )

    assert recorded.exit_code == 0, recorded.output
    payload = eventually(
        lambda: scalar(
            settings, "SELECT payload FROM audit_log WHERE event_type = 'AccessReviewed'"
        ),
        what="the access review in the audit log",
    )
    audited = json.loads(payload)
    assert (
        scalar(settings, "SELECT actor FROM audit_log WHERE event_type = 'AccessReviewed'")
        == "ciso"
    )
    entries = {o["name"]: o for o in audited["operators"]}
    assert (entries["old"]["unused"], entries["sam"]["high_impact_approvals"]) == (True, 1)
    assert audited["note"] == "old" and audited["policy_version"] == "2026.11.1"


def test_a_revoked_token_is_refused_on_the_very_next_request_and_its_session_ends(
    settings: Settings, console: tuple[TestClient, dict[str, str]]
) -> None:
    client, tokens = console
    web = signed_in(client.app, tokens["sam"])
    assert web.get("/queue").status_code == 200
    assert client.get("/api/me", headers=bearer(tokens["sam"])).status_code == 200

    revoked = CliRunner().invoke(cli_app, ["operators", "revoke", "sam"], env=env_for(settings))

    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/me", headers=bearer(tokens["sam"])).status_code == 401
    page = web.get("/queue")
    assert page.url.path == "/sign-in" and "token was revoked" in page.text
    assert client.get("/api/me", headers=bearer(tokens["fay"])).status_code == 200
