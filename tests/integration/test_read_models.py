"""The read models on a scripted story (tests/integration/scenario.py): exact rows, exact
metrics, an append-only tamper-evident audit, and a replay equal to the live tables."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import sql
from psycopg.rows import dict_row

from infra.db import DatabaseUrls, database_urls
from infra.kafka import producer_config
from infra.settings import PROJECT_ROOT, Settings
from projections.queries import audit_gaps, metrics, trace
from projections.replay import differences, rebuild
from schemas.codec import Codec
from tests.integration import scenario
from tests.integration.helpers import eventually, running
from tests.stack import Stack, env_for

STORY = scenario.story()
DUPLICATE = STORY[2]  # r1's RecommendationProduced, published twice


@pytest.fixture(scope="module")
def projected(stack: Stack) -> Iterator[Settings]:
    """Publish the story (plus a duplicate and a garbage record) and project it once."""
    settings = stack.isolated()
    codec = Codec.load()
    producer = Producer(producer_config(settings))
    for event in [*STORY, DUPLICATE]:
        value, headers = codec.encode(event)
        producer.produce(
            settings.topic(event.topic), key=event.case_id.encode(), value=value, headers=headers
        )
    producer.produce(settings.topic("decisions"), key=b"c8", value=b"\xc3\x01garbage")
    producer.flush(30)
    expected_audit = len(STORY) + 1  # + the dead letter for the garbage record
    with running(settings, ("projections.worker", "readmodels")):
        eventually(
            lambda: count(settings, "audit_log") == expected_audit,
            timeout_s=60,
            what=f"{expected_audit} audit rows",
        )
    yield settings


def count(settings: Settings, table: str) -> int:
    with psycopg.connect(database_urls(settings).app) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    return int(row[0]) if row else 0


def rows(settings: Settings, query: str, *params: object) -> list[dict]:
    with (
        psycopg.connect(database_urls(settings).app) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        return cur.execute(query, params).fetchall()


def test_case_state_has_one_exact_row_per_case(projected: Settings) -> None:
    got = {r["case_id"]: r for r in rows(projected, "SELECT * FROM case_state")}
    assert sorted(got) == [f"c{i}" for i in range(1, 9)]
    c1, c2, c6 = got["c1"], got["c2"], got["c6"]
    assert (c1["status"], c1["workflow"], c1["phase"]) == ("resolved", "identity_access", "bounded")
    assert c1["first_action_at"] == scenario.at(2)  # the automatic reset succeeded
    assert c1["latest_recommendation_id"] == "r1"
    assert (c2["status"], c2["reopen_count"], c2["resolution_count"]) == ("reopened", 1, 1)
    assert c2["resolved_at"] is None
    assert c2["actions_taken"] == ["refund_payment"]
    assert (c6["issue_class"], c6["reclassified"]) == ("refund_request", True)
    assert got["c8"]["status"] == "open"
    # Hostile text is stored verbatim (rendering escapes it; storing never alters it).
    detail = rows(projected, "SELECT detail FROM case_timeline WHERE event_id = 'open-c1'")
    assert detail[0]["detail"]["description"] == scenario.opened("c1", "", "", "").description


def test_approval_queue_holds_only_the_pending_item_with_all_an_operator_needs(
    projected: Settings,
) -> None:
    queue = rows(projected, "SELECT * FROM approval_queue")
    assert [q["recommendation_id"] for q in queue] == ["r8"]
    item = queue[0]
    assert item["action_name"] == "refund_payment"
    assert item["action_params"] == {"amount": 50.0, "order_id": "ORD-1"}
    assert item["summary"] == "summary of c8"
    assert item["rationale"] == "3 of 4 similar cases were double_charge"
    assert item["similar_cases"] == [{"case_id": "old-1", "similarity": 0.9}]
    assert item["confidence"] == pytest.approx(0.8)
    assert item["effects"]["customer_state"] == "refund issued to the original payment method"
    assert item["reversible"] is False
    assert (item["approvals_required"], item["approvals_received"]) == (2, 0)
    assert item["eligible_roles"] == ["supervisor", "finance_lead"]
    assert item["requested_at"] == scenario.at(1)
    assert item["expires_at"] == scenario.at(61)
    assert item["risk"] == "high"


def test_recommendation_facts_record_what_humans_made_of_each(projected: Settings) -> None:
    facts = {
        r["recommendation_id"]: r for r in rows(projected, "SELECT * FROM recommendation_facts")
    }
    assert {k: (v["review_status"], v["verdict"]) for k, v in facts.items()} == {
        "r1": (None, None),
        "r2": ("approved", "accepted"),
        "r3": ("approved", "overridden"),
        "r4": (None, None),
        "r5": (None, None),
        "r6": ("rejected", "rejected"),
        "r7": ("expired", None),
        "r8": ("pending", None),
    }
    assert facts["r2"]["approvers"] == ["alice", "bob"]
    assert facts["r3"]["final_action_name"] == "escalate_to_specialist"
    executions = {r["execution_id"]: r for r in rows(projected, "SELECT * FROM executions")}
    assert {k: (v["status"], v["timed_out"], v["rolled_back"]) for k, v in executions.items()} == {
        "x1": ("succeeded", False, False),
        "x2": ("failed", True, False),
        "x3": ("rolled_back", False, True),
    }


def test_metrics_match_the_hand_computed_figures(projected: Settings) -> None:
    with psycopg.connect(database_urls(projected).app) as conn:
        by_workflow = {r["workflow"]: r for r in metrics(conn, ["workflow"])}
        by_queue_channel = metrics(conn, ["queue", "channel"])
    billing = by_workflow["billing"]
    for name, value in scenario.expected_billing_metrics().items():
        assert billing[name] == pytest.approx(value), name
    assert billing["acceptance_rate"] == pytest.approx(1 / 3)
    assert billing["override_rate"] == pytest.approx(1 / 3)
    assert billing["denial_rate"] == pytest.approx(1 / 6)
    assert billing["error_rate"] == pytest.approx(1.0)
    assert billing["rollback_rate"] == pytest.approx(0.5)
    assert billing["reopen_rate"] == pytest.approx(0.5)
    assert billing["mean_first_action_seconds"] == pytest.approx(240.0)
    assert billing["mean_resolution_seconds"] == pytest.approx(1200.0)
    identity = by_workflow["identity_access"]
    assert (
        identity["recommendations"],
        identity["executions"],
        identity["error_rate"],
        identity["mean_first_action_seconds"],
        identity["mean_resolution_seconds"],
    ) == (1, 1, 0.0, 60.0 * 2, 600.0)
    # Any grouping re-aggregates exactly: the sums over queue x channel equal the totals.
    assert sum(r["recommendations"] for r in by_queue_channel) == 8
    assert sum(r["cases_opened"] for r in by_queue_channel) == 8
    assert sum(r["reviewed"] for r in by_queue_channel) == 3


def test_shadow_alignment_compares_with_what_operators_did(projected: Settings) -> None:
    got = {
        (r["workflow"], r["issue_class"]): r
        for r in rows(projected, "SELECT * FROM shadow_alignment")
    }
    shipping = got[("shipping", "delivery_delay")]
    assert (shipping["compared"], shipping["category_matches"], shipping["action_matches"]) == (
        1,
        1,
        1,
    )
    plan = got[("billing", "plan_change")]  # recommended change_plan, did change_plan
    assert (plan["category_matches"], plan["action_matches"]) == (1, 1)


def test_trace_tells_the_story_in_order(projected: Settings) -> None:
    with psycopg.connect(database_urls(projected).app) as conn:
        story = trace(conn, "c2")
    # Events at the same minute keep the log's order within their topic; across topics
    # the order at equal times is by topic name, so compare as time-ordered groups.
    assert [(s["occurred_at"], s["event_type"]) for s in story] == sorted(
        [(s["occurred_at"], s["event_type"]) for s in story], key=lambda p: p[0]
    )
    assert story[0]["event_type"] == "CaseOpened"
    assert [s["event_type"] for s in story][-3:] == [
        "ExecutionFailed",
        "CaseResolved",
        "CaseReopened",
    ]
    assert sorted(s["event_type"] for s in story) == sorted(
        [
            "CaseOpened",
            "RecommendationProduced",
            "GuardrailDecided",
            "ReviewRecorded",
            "ReviewRecorded",
            "ApprovalCompleted",
            "ExecutionRequested",
            "ExecutionFailed",
            "CaseResolved",
            "CaseReopened",
        ]
    )
    assert any("timed out" in s["summary"] for s in story)
    assert any("model saw: subject, description" in s["summary"] for s in story)


def test_duplicates_and_garbage_change_nothing(projected: Settings) -> None:
    assert count(projected, "audit_log") == len(STORY) + 1
    letters = rows(
        projected, "SELECT payload::jsonb AS p FROM audit_log WHERE event_type = 'DeadLettered'"
    )
    assert len(letters) == 1 and letters[0]["p"]["error_class"] in {
        "UndecodableRecord",
        "UnknownSchema",
    }
    timeline = count(projected, "case_timeline")
    assert timeline == len(STORY) - 1  # the policy is not part of any case


def test_audit_verifies_and_holds_every_required_outcome(projected: Settings) -> None:
    result = casegate(projected, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(STORY) + 1} rows" in result.stdout
    with psycopg.connect(database_urls(projected).app) as conn:
        gaps = audit_gaps(
            conn,
            ("GuardrailDecided", "ApprovalCompleted:approved", "ExecutionSucceeded"),
            datetime(2030, 1, 1, tzinfo=UTC),
        )
    # c8's approval is past its expiry (at the 2030 'now') with no outcome: the one gap.
    assert [(g.recommendation_id, g.missing) for g in gaps] == [
        ("r8", "ApprovalCompleted or ApprovalExpired")
    ]


def test_the_application_role_cannot_change_the_audit(projected: Settings) -> None:
    with (
        psycopg.connect(database_urls(projected).app) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    with (
        psycopg.connect(database_urls(projected).app) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("DELETE FROM audit_log")


def test_replay_rebuilds_tables_equal_to_the_live_ones(projected: Settings) -> None:
    report = rebuild(projected, Codec.load(), schema="rebuild")
    # The story plus the live run's dead letter; the duplicate dropped, the garbage skipped
    # (and not dead-lettered a second time).
    assert (report.events, report.duplicates, report.dead_letters_skipped) == (len(STORY) + 1, 1, 1)
    urls = database_urls(projected)
    with psycopg.connect(urls.app) as conn:
        assert differences(conn, "public", "rebuild") == dict.fromkeys(
            differences(conn, "public", "rebuild"), 0
        )
        assert conn.execute("SELECT count(*) FROM rebuild.audit_log").fetchone() == (
            len(STORY) + 1,
        )


def test_a_superuser_edit_is_caught_by_audit_verify(projected: Settings) -> None:
    # Runs last in this module: it breaks the chain on purpose.
    tamper(database_urls(projected))
    result = casegate(projected, "audit", "verify")
    assert result.returncode == 1
    assert "NOT intact" in result.stderr and "seq 3" in result.stderr
    assert "content does not match its hash" in result.stderr


def tamper(urls: DatabaseUrls) -> None:
    with psycopg.connect(urls.admin) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        conn.execute(
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3 AND topic = "
            "(SELECT topic FROM audit_log WHERE seq = 3 ORDER BY topic, partition "
            "LIMIT 1) AND partition = (SELECT partition FROM audit_log WHERE seq = 3 "
            "ORDER BY topic, partition LIMIT 1)"
        )
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")


def casegate(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        env=env_for(settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
