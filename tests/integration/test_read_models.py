"""The read models on a scripted story (tests/integration/scenario.py): exact rows, exact
metrics, an append-only tamper-evident audit, and a replay equal to the live tables."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import sql

from infra.db import DatabaseUrls, database_urls, migrate
from infra.kafka import producer_config
from infra.settings import Settings
from policy.loader import PolicyInvalid, load_policy_text
from projections.case_state import CaseStateProjection
from projections.envelope import Envelope
from projections.queries import audit_gaps, metrics, trace
from projections.recommendations import RecommendationFactsProjection
from projections.replay import differences, rebuild
from projections.staging import Load
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    CaseOpened,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    PolicyPublished,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    action_digest,
    record_key,
)
from tests.integration import scenario
from tests.integration.helpers import casegate, eventually, rows, running
from tests.stack import Stack

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
            settings.topic(event.topic), key=record_key(event), value=value, headers=headers
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
        # The indexes and keys the replay builds after loading are back, as migrated.
        assert shape(conn, "rebuild") == shape(conn, "public")
        assert ("case_timeline", "case_timeline_pkey", "PRIMARY KEY (topic, event_id)") in shape(
            conn, "rebuild"
        )


def shape(conn: psycopg.Connection, schema: str) -> set[tuple[str, str, str]]:
    """Every index and constraint of ``schema``: (table, name, definition)."""
    indexes = conn.execute(
        "SELECT tablename, indexname, replace(indexdef, schemaname || '.', '') "
        "FROM pg_indexes WHERE schemaname = %s",
        (schema,),
    ).fetchall()
    constraints = conn.execute(
        "SELECT t.relname, c.conname, replace(pg_get_constraintdef(c.oid), n.nspname || '.', '') "
        "FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s",
        (schema,),
    ).fetchall()
    return {tuple(r) for r in [*indexes, *constraints]}  # type: ignore[misc]


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


# --- The batched merge equals the former one-statement-per-event upserts -----------------
#
# The read models used to run one upsert per event (below, verbatim from before the
# set-based merge). Each batch is now folded per key in Python and merged with one
# statement per table; on random histories, cut into random batches, both must leave
# exactly the same rows, whatever was stored before a batch.

REF_OPEN = """
INSERT INTO case_state AS s (case_id, status, updated_at, source, channel, queue, team,
    issue_class, issue_class_at, subject, priority, opened_at)
VALUES (%(case_id)s, 'open', %(at)s, %(source)s, %(channel)s, %(queue)s, %(team)s,
    %(issue_class)s, %(at)s, %(subject)s, %(priority)s, %(at)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    -- A second CaseOpened for the same case (an upstream error) changes nothing it filled.
    status = CASE WHEN s.opened_at IS NULL THEN 'open' ELSE s.status END,
    source = coalesce(s.source, EXCLUDED.source), channel = coalesce(s.channel, EXCLUDED.channel),
    queue = coalesce(s.queue, EXCLUDED.queue), team = coalesce(s.team, EXCLUDED.team),
    issue_class = coalesce(s.issue_class, EXCLUDED.issue_class),
    issue_class_at = coalesce(s.issue_class_at, EXCLUDED.issue_class_at),
    subject = coalesce(s.subject, EXCLUDED.subject),
    priority = coalesce(s.priority, EXCLUDED.priority),
    opened_at = coalesce(s.opened_at, EXCLUDED.opened_at)
"""
REF_FIRST_ACTION = """
INSERT INTO case_state AS s (case_id, status, updated_at, first_action_at)
VALUES (%(case_id)s, 'pending', %(at)s, %(at)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    first_action_at = least(coalesce(s.first_action_at, EXCLUDED.first_action_at),
                            EXCLUDED.first_action_at)
"""
REF_RESOLVE = """
INSERT INTO case_state AS s (case_id, status, updated_at, resolved_at, issue_class,
    issue_class_at, actions_taken, resolution_count)
VALUES (%(case_id)s, 'resolved', %(at)s, %(at)s, %(category)s, %(at)s, %(actions)s, 1)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    status = 'resolved', resolved_at = EXCLUDED.resolved_at,
    actions_taken = EXCLUDED.actions_taken, resolution_count = s.resolution_count + 1,
    issue_class = CASE WHEN s.issue_class_at IS NULL OR EXCLUDED.issue_class_at >=
        s.issue_class_at THEN EXCLUDED.issue_class ELSE s.issue_class END,
    issue_class_at = greatest(s.issue_class_at, EXCLUDED.issue_class_at)
"""
REF_CLASSIFY = """
INSERT INTO case_state AS s (case_id, status, updated_at, issue_class, issue_class_at)
VALUES (%(case_id)s, 'pending', %(at)s, %(category)s, %(at)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    issue_class = CASE WHEN s.issue_class_at IS NULL OR EXCLUDED.issue_class_at >=
        s.issue_class_at THEN EXCLUDED.issue_class ELSE s.issue_class END,
    issue_class_at = greatest(s.issue_class_at, EXCLUDED.issue_class_at)
"""
REF_RECLASSIFY = """
INSERT INTO case_state AS s (case_id, status, updated_at, issue_class, issue_class_at,
    reclassified)
VALUES (%(case_id)s, 'pending', %(at)s, %(category)s, %(at)s, true)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    reclassified = true,
    issue_class = CASE WHEN s.issue_class_at IS NULL OR EXCLUDED.issue_class_at >=
        s.issue_class_at THEN EXCLUDED.issue_class ELSE s.issue_class END,
    issue_class_at = greatest(s.issue_class_at, EXCLUDED.issue_class_at)
"""
REF_REOPEN = """
INSERT INTO case_state AS s (case_id, status, updated_at, reopen_count)
VALUES (%(case_id)s, 'reopened', %(at)s, 1)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    status = 'reopened', resolved_at = NULL, reopen_count = s.reopen_count + 1
"""
REF_RECOMMENDED = """
INSERT INTO case_state AS s (case_id, status, updated_at, latest_recommendation_id)
VALUES (%(case_id)s, 'pending', %(at)s, %(recommendation_id)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    latest_recommendation_id = EXCLUDED.latest_recommendation_id
"""
REF_DECIDED = """
INSERT INTO case_state AS s (case_id, status, updated_at, workflow, phase)
VALUES (%(case_id)s, 'pending', %(at)s, %(workflow)s, %(phase)s)
ON CONFLICT (case_id) DO UPDATE SET updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
    workflow = EXCLUDED.workflow, phase = EXCLUDED.phase
"""
REF_PRODUCED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, produced_at, workflow,
    predicted_category, confidence, action_name, action_params, summary, rationale,
    similar_cases, provenance)
VALUES (%(recommendation_id)s, %(case_id)s, %(at)s, %(workflow)s, %(category)s,
    %(confidence)s, %(action_name)s, %(action_params)s, %(summary)s, %(rationale)s,
    %(similar)s, %(provenance)s)
ON CONFLICT (recommendation_id) DO UPDATE SET produced_at = EXCLUDED.produced_at,
    -- The guard's view of workflow and action wins, whichever event is read first.
    workflow = CASE WHEN f.decided_at IS NULL THEN EXCLUDED.workflow ELSE f.workflow END,
    predicted_category = EXCLUDED.predicted_category, confidence = EXCLUDED.confidence,
    action_name = CASE WHEN f.decided_at IS NULL THEN EXCLUDED.action_name
                       ELSE f.action_name END,
    action_params = CASE WHEN f.decided_at IS NULL THEN EXCLUDED.action_params
                         ELSE f.action_params END,
    summary = EXCLUDED.summary, rationale = EXCLUDED.rationale,
    similar_cases = EXCLUDED.similar_cases, provenance = EXCLUDED.provenance
"""
REF_FACT_DECIDED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, workflow, phase,
    action_name, action_params, outcome, reasons, policy_version, decided_at,
    approvals_required, eligible_roles, expires_at, review_status)
VALUES (%(recommendation_id)s, %(case_id)s, %(workflow)s, %(phase)s, %(action_name)s,
    %(action_params)s, %(outcome)s, %(reasons)s, %(policy_version)s, %(at)s,
    %(approvals_required)s, %(eligible_roles)s, %(expires_at)s, %(review_status)s)
ON CONFLICT (recommendation_id) DO UPDATE SET workflow = EXCLUDED.workflow,
    phase = EXCLUDED.phase, action_name = EXCLUDED.action_name,
    action_params = EXCLUDED.action_params, outcome = EXCLUDED.outcome,
    reasons = EXCLUDED.reasons, policy_version = EXCLUDED.policy_version,
    decided_at = EXCLUDED.decided_at, approvals_required = EXCLUDED.approvals_required,
    eligible_roles = EXCLUDED.eligible_roles, expires_at = EXCLUDED.expires_at,
    review_status = EXCLUDED.review_status
"""
REF_REVIEWED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, approvals_received,
    approvers, overridden)
VALUES (%(recommendation_id)s, %(case_id)s, %(received)s, ARRAY[%(actor)s], %(override)s)
ON CONFLICT (recommendation_id) DO UPDATE SET approvals_received = EXCLUDED.approvals_received,
    approvers = CASE WHEN %(actor)s = ANY (f.approvers) THEN f.approvers
                     ELSE f.approvers || %(actor)s END,
    overridden = f.overridden OR EXCLUDED.overridden
"""
# A decision's action, or a bound review's, is what the item now holds.
REF_ITEM = """
UPDATE recommendation_facts SET pending_action_name = %(action_name)s,
    pending_action_params = %(action_params)s, params_hash = %(params_hash)s,
    item_policy_version = %(version)s, proposed_by = %(proposed_by)s
WHERE recommendation_id = %(recommendation_id)s
"""
REF_ITEM_REVIEWED = """
UPDATE recommendation_facts SET approvers = %(approvers)s,
    approvals_required = %(approvals_required)s, eligible_roles = %(eligible_roles)s
WHERE recommendation_id = %(recommendation_id)s
"""
REF_REVIEW_DENIED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, reviews_denied)
VALUES (%(recommendation_id)s, %(case_id)s, 1)
ON CONFLICT (recommendation_id) DO UPDATE SET reviews_denied = f.reviews_denied + 1
"""
REF_COMPLETED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, review_status, verdict,
    final_action_name, final_action_params, closed_at)
VALUES (%(recommendation_id)s, %(case_id)s, %(status)s, %(verdict)s, %(action_name)s,
    %(action_params)s, %(at)s)
ON CONFLICT (recommendation_id) DO UPDATE SET review_status = EXCLUDED.review_status,
    verdict = CASE WHEN EXCLUDED.verdict = 'accepted' AND f.overridden THEN 'overridden'
                   ELSE EXCLUDED.verdict END,
    final_action_name = EXCLUDED.final_action_name,
    final_action_params = EXCLUDED.final_action_params, closed_at = EXCLUDED.closed_at
"""
REF_EXPIRED = """
INSERT INTO recommendation_facts AS f (recommendation_id, case_id, review_status, closed_at)
VALUES (%(recommendation_id)s, %(case_id)s, 'expired', %(at)s)
ON CONFLICT (recommendation_id) DO UPDATE SET review_status = 'expired',
    closed_at = EXCLUDED.closed_at
"""
REF_EXEC_REQUESTED = """
INSERT INTO executions AS x (execution_id, recommendation_id, case_id, action_name,
    action_params, mode, requested_by, policy_version, requested_at, status)
VALUES (%(execution_id)s, %(recommendation_id)s, %(case_id)s, %(action_name)s,
    %(action_params)s, %(mode)s, %(requested_by)s, %(policy_version)s, %(at)s, 'requested')
ON CONFLICT (execution_id) DO UPDATE SET recommendation_id = EXCLUDED.recommendation_id,
    action_name = EXCLUDED.action_name, action_params = EXCLUDED.action_params,
    mode = EXCLUDED.mode, requested_by = EXCLUDED.requested_by,
    policy_version = EXCLUDED.policy_version, requested_at = EXCLUDED.requested_at
"""
REF_EXEC_FINISHED = """
INSERT INTO executions AS x (execution_id, case_id, action_name, status, error_class,
    message, timed_out, finished_at)
VALUES (%(execution_id)s, %(case_id)s, %(action_name)s, %(status)s, %(error_class)s,
    %(message)s, %(timed_out)s, %(at)s)
ON CONFLICT (execution_id) DO UPDATE SET
    status = CASE WHEN x.rolled_back THEN 'rolled_back' ELSE EXCLUDED.status END,
    error_class = EXCLUDED.error_class, message = EXCLUDED.message,
    timed_out = EXCLUDED.timed_out, finished_at = EXCLUDED.finished_at
"""
REF_EXEC_ROLLED_BACK = """
INSERT INTO executions AS x (execution_id, case_id, action_name, status, rolled_back,
    message, finished_at)
VALUES (%(execution_id)s, %(case_id)s, %(action_name)s, 'rolled_back', true, %(message)s,
    %(at)s)
ON CONFLICT (execution_id) DO UPDATE SET status = 'rolled_back', rolled_back = true,
    message = coalesce(x.message || '; ', '') || EXCLUDED.message
"""
REF_POLICY = """
INSERT INTO policy_versions (version, sha256, author, published_at, document)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT (version) DO NOTHING
"""
REF_CATALOG = """
INSERT INTO catalog_actions (policy_version, name, description, risk, effects, reversible,
    rollback_action, permission, approvals, approval_roles)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
REF_UPDATE_COLUMN = {
    column: sql.SQL("UPDATE case_state SET {} = %(value)s WHERE case_id = %(case_id)s").format(
        sql.Identifier(column)
    )
    for column in ("channel", "queue", "team", "subject", "priority")
}
REF_FIRST_ACTIONS = (
    CaseUpdated,
    ReviewRecorded,
    CaseReclassified,
    ExecutionSucceeded,
    CaseResolved,
)


def _ref_json(value: object) -> str:
    return orjson.dumps(value).decode()


def _ref_action(action: ActionSpec | None) -> dict[str, object]:
    return {
        "action_name": action.name if action else None,
        "action_params": _ref_json(action.params) if action else None,
    }


def _ref_item(
    recommendation_id: str, action: ActionSpec, version: str, proposed_by: str | None
) -> dict[str, object]:
    return _ref_action(action) | {
        "recommendation_id": recommendation_id,
        "params_hash": action_digest(action),
        "version": version,
        "proposed_by": proposed_by,
    }


def reference_steps(e: Event) -> Iterator[tuple[object, object]]:
    """The statements the read models ran for one event before the set-based merge."""
    base = {"case_id": e.case_id, "at": e.occurred_at}
    match e:
        case CaseOpened():
            yield (
                REF_OPEN,
                base
                | {
                    "source": e.source,
                    "channel": e.channel,
                    "queue": e.queue,
                    "team": e.team,
                    "issue_class": e.issue_class,
                    "subject": e.subject,
                    "priority": e.priority,
                },
            )
        case CaseResolved():
            yield (
                REF_RESOLVE,
                base | {"category": e.category, "actions": [a.name for a in e.actions_taken]},
            )
        case CaseReopened():
            yield (REF_REOPEN, base)
        case CaseReclassified():
            yield (REF_RECLASSIFY, base | {"category": e.category})
        case CaseUpdated():
            if isinstance(e.changes.get("issue_class"), str):
                yield (REF_CLASSIFY, base | {"category": e.changes["issue_class"]})
            for column, value in e.changes.items():
                if column in REF_UPDATE_COLUMN:
                    yield (
                        REF_UPDATE_COLUMN[column],
                        {"case_id": e.case_id, "value": None if value is None else str(value)},
                    )
        case RecommendationProduced():
            yield (REF_RECOMMENDED, base | {"recommendation_id": e.recommendation_id})
        case GuardrailDecided():
            yield (REF_DECIDED, base | {"workflow": e.workflow, "phase": e.phase})
    if isinstance(e, REF_FIRST_ACTIONS):
        yield (REF_FIRST_ACTION, base)
    match e:
        case RecommendationProduced():
            p = e.provenance
            yield (
                REF_PRODUCED,
                base
                | _ref_action(e.action)
                | {
                    "recommendation_id": e.recommendation_id,
                    "workflow": e.workflow,
                    "category": e.category,
                    "confidence": e.confidence,
                    "summary": e.summary,
                    "rationale": e.rationale,
                    "similar": _ref_json(
                        [
                            {"case_id": s.case_id, "similarity": s.similarity}
                            for s in e.similar_cases
                        ]
                    ),
                    "provenance": _ref_json(
                        {
                            "recommender": p.recommender,
                            "model": p.model,
                            "prompt_version": p.prompt_version,
                            "policy_version": p.policy_version,
                            "fields_seen": list(p.fields_seen),
                            "input_sha256": p.input_sha256,
                            "fallback_reason": p.fallback_reason,
                        }
                    ),
                },
            )
        case GuardrailDecided():
            yield (
                REF_FACT_DECIDED,
                base
                | _ref_action(e.action)
                | {
                    "recommendation_id": e.recommendation_id,
                    "workflow": e.workflow,
                    "phase": e.phase,
                    "outcome": e.outcome,
                    "reasons": list(e.reasons),
                    "policy_version": e.policy_version,
                    "approvals_required": e.approvals_required,
                    "eligible_roles": list(e.eligible_roles),
                    "expires_at": e.expires_at,
                    "review_status": "pending" if e.outcome == "approval_required" else None,
                },
            )
            if e.action is not None:
                yield (REF_ITEM, _ref_item(e.recommendation_id, e.action, e.policy_version, None))
        case ReviewRecorded():
            yield (
                REF_REVIEWED,
                base
                | {
                    "recommendation_id": e.recommendation_id,
                    "actor": e.actor,
                    "received": e.approvals_received,
                    "override": e.verdict == "override",
                },
            )
            if e.action is not None and e.policy_version is not None:
                item = _ref_item(e.recommendation_id, e.action, e.policy_version, e.proposed_by)
                yield (REF_ITEM, item)
                yield (
                    REF_ITEM_REVIEWED,
                    {
                        "recommendation_id": e.recommendation_id,
                        "approvers": list(e.approvers),
                        "approvals_required": e.approvals_required,
                        "eligible_roles": list(e.eligible_roles),
                    },
                )
        case ReviewDenied() if e.recommendation_id:
            yield (REF_REVIEW_DENIED, base | {"recommendation_id": e.recommendation_id})
        case ApprovalCompleted():
            approved = e.outcome == "approved"
            yield (
                REF_COMPLETED,
                base
                | _ref_action(e.action)
                | {
                    "recommendation_id": e.recommendation_id,
                    "status": "approved" if approved else "rejected",
                    "verdict": "accepted" if approved else "rejected",
                },
            )
        case ApprovalExpired():
            yield (REF_EXPIRED, base | {"recommendation_id": e.recommendation_id})
        case ExecutionRequested():
            yield (
                REF_EXEC_REQUESTED,
                base
                | _ref_action(e.action)
                | {
                    "execution_id": e.execution_id,
                    "recommendation_id": e.recommendation_id,
                    "mode": e.mode,
                    "requested_by": e.requested_by,
                    "policy_version": e.policy_version,
                },
            )
        case ExecutionSucceeded() | ExecutionFailed():
            failed = isinstance(e, ExecutionFailed)
            yield (
                REF_EXEC_FINISHED,
                base
                | {
                    "execution_id": e.execution_id,
                    "action_name": e.action_name,
                    "status": "failed" if failed else "succeeded",
                    "error_class": e.error_class if isinstance(e, ExecutionFailed) else None,
                    "message": e.message if isinstance(e, ExecutionFailed) else None,
                    "timed_out": e.timed_out if isinstance(e, ExecutionFailed) else False,
                },
            )
        case ExecutionRolledBack():
            yield (
                REF_EXEC_ROLLED_BACK,
                base
                | {
                    "execution_id": e.execution_id,
                    "action_name": e.action_name,
                    "message": f"rolled back with {e.rollback_action}: {e.reason}",
                },
            )
        case PolicyPublished():
            yield (REF_POLICY, (e.version, e.sha256, e.author, e.occurred_at, e.document))
            try:
                policy = load_policy_text(e.document).policy
            except PolicyInvalid:
                return
            for a in policy.catalog.values():
                yield (
                    REF_CATALOG,
                    (
                        e.version,
                        a.name,
                        a.description,
                        a.risk,
                        _ref_json(a.effects.model_dump(exclude_none=True)),
                        a.reversible,
                        a.rollback.action if a.rollback else None,
                        a.permission,
                        a.approvals.count,
                        list(a.approvals.roles),
                    ),
                )


MERGED_TABLES = (
    "case_state",
    "recommendation_facts",
    "executions",
    "policy_versions",
    "catalog_actions",
)


def random_history(rng: random.Random, n: int) -> list[Event]:
    """``n`` events about three cases, four recommendations and three executions, with
    times drawn from four minutes (so ties happen) and every nullable field sometimes
    empty: every rule of case_state, recommendation_facts and executions gets exercised,
    in every order, including orders no processor would produce."""
    cases = ("c0", "c1", "c2")
    recs = {f"r{i}": cases[i % 3] for i in range(4)}
    execs = {f"x{i}": f"r{i}" for i in range(3)}
    pick = rng.choice

    def maybe(value: object) -> object:
        return value if rng.random() < 0.7 else None

    def action() -> ActionSpec | None:
        return pick([None, scenario.REFUND, scenario.PLAN, ActionSpec(name="close_account")])

    out: list[Event] = []
    for k in range(n):
        at = scenario.at(rng.randrange(4))
        rec = pick(list(recs))
        ex = pick(list(execs))
        case = pick(cases)
        common = {"event_id": f"e{k}", "occurred_at": at}
        kind = rng.randrange(17)
        e: Event
        if kind == 0:
            e = CaseOpened(
                **common,
                case_id=case,
                source=pick(["crm", "mail"]),
                channel=pick(["chat", "email"]),
                queue=pick(["q1", "q2"]),
                team=pick(["t1", "t2"]),
                issue_class=maybe(pick(["billing", "access"])),  # type: ignore[arg-type]
                subject=pick(["s1", "s2"]),
                description="d",
                priority=pick(["low", "high"]),
                customer={},
                attributes={},
            )
        elif kind == 1:
            keys = rng.sample(
                ["channel", "queue", "team", "subject", "priority", "issue_class", "note"],
                rng.randrange(4),
            )
            values: list[object] = ["v1", "v2", None, 7, True]
            e = CaseUpdated(
                **common,
                case_id=case,
                actor="op",
                changes={key: pick(values) for key in keys},  # type: ignore[misc]
            )
        elif kind == 2:
            e = CaseResolved(
                **common,
                case_id=case,
                resolved_by="op",
                resolution_code="done",
                category=pick(["billing", "access", "refund"]),
                actions_taken=tuple(
                    ActionSpec(name=pick(["a", "b"])) for _ in range(rng.randrange(3))
                ),
            )
        elif kind == 3:
            e = CaseReopened(**common, case_id=case, reason="back")
        elif kind == 4:
            e = CaseReclassified(
                **common,
                case_id=case,
                review_id=f"rv{k}",
                actor="op",
                roles=("supervisor",),
                category=pick(["billing", "refund"]),
            )
        elif kind == 5:
            e = replace(
                scenario.recommended(
                    recs[rec], rec, action(), pick(["billing", "access"]), 0, pick(["w1", "w2"])
                ),
                **common,
                workflow=maybe("w1"),
                category=maybe("billing"),
                confidence=rng.random(),
            )
        elif kind == 6:
            outcome = pick(["approval_required", "shadowed", "denied", "auto_authorized"])
            e = replace(
                scenario.decided(recs[rec], rec, outcome, "w", "p", action(), 0, approvals=1),
                **common,
                workflow=maybe(pick(["w1", "w3"])),
                phase=maybe(pick(["shadow", "bounded"])),
                expires_at=maybe(at),
            )
        elif kind == 7:
            e = replace(
                scenario.reviewed(
                    recs[rec],
                    rec,
                    pick(["alice", "bob"]),
                    pick(["approve", "override", "reject"]),
                    rng.randrange(3),
                    2,
                    0,
                ),
                **common,
            )
            if rng.random() < 0.5:
                # Written since reviews are bound: the item's state after the review.
                item_action = action() or ActionSpec(name="a")
                e = replace(
                    e,
                    action=item_action,
                    params_hash=action_digest(item_action),
                    policy_version=pick(["2026.11.1", "v2"]),
                    proposed_by=maybe("carol"),
                    eligible_roles=tuple(rng.sample(["supervisor", "finance_lead"], 1)),
                    approvers=tuple(rng.sample(["alice", "bob", "dan"], rng.randrange(3))),
                )
        elif kind == 8:
            e = ReviewDenied(
                **common,
                case_id=recs[rec],
                review_id=f"rv{k}",
                recommendation_id=pick([rec, None, ""]),
                actor="eve",
                reason="role_not_eligible",
                detail="no",
            )
        elif kind == 9:
            e = replace(
                scenario.completed(
                    recs[rec], rec, pick(["approved", "rejected"]), ("alice",), action(), 0
                ),
                **common,
            )
        elif kind == 10:
            e = ApprovalExpired(
                **common,
                case_id=recs[rec],
                recommendation_id=rec,
                expired_at=at,
                approvals_received=1,
            )
        elif kind == 11:
            e = replace(
                scenario.requested(
                    recs[execs[ex]], execs[ex], ex, scenario.RESET, pick(["auto", "approved"]), 0
                ),
                **common,
            )
        elif kind == 12:
            e = ExecutionSucceeded(
                **common,
                case_id=recs[execs[ex]],
                execution_id=ex,
                action_name=pick(["reset_password", "refund_payment"]),
                result={},
                duration_ms=1.0,
            )
        elif kind == 13:
            e = ExecutionFailed(
                **common,
                case_id=recs[execs[ex]],
                execution_id=ex,
                action_name="refund_payment",
                error_class=pick(["Timeout", "Refused"]),
                retriable=False,
                timed_out=rng.random() < 0.5,
                message=pick(["m1", "m2"]),
                duration_ms=1.0,
            )
        elif kind == 14:
            e = ExecutionRolledBack(
                **common,
                case_id=recs[execs[ex]],
                execution_id=ex,
                action_name="refund_payment",
                rollback_action="void",
                reason=pick(["r1", "r2"]),
                succeeded=True,
            )
        elif kind == 15:
            policy = scenario.policy_event()
            e = replace(
                policy,
                **common,
                version=pick(["v1", "v2"]),
                document=pick([policy.document, "not: [a policy"]),
            )
        else:
            # Types the three tables ignore.
            e = ReviewSubmitted(
                **common,
                case_id=case,
                review_id=f"rv{k}",
                recommendation_id=rec,
                actor="alice",
                roles=("supervisor",),
                verdict="approve",
            )
        out.append(e)
    return out


@pytest.fixture(scope="module")
def two_schemas(stack: Stack) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """A database with two fresh copies of the read models: ``ref`` for the former
    per-event statements, ``merged`` for the batched merge."""
    settings = stack.isolated()
    urls = database_urls(settings)
    for schema in ("ref", "merged"):
        migrate(urls, schema=schema)
    with (
        psycopg.connect(urls.app, options="-c search_path=ref") as ref,
        psycopg.connect(urls.app, options="-c search_path=merged") as merged,
    ):
        yield ref, merged


def _clear(conn: psycopg.Connection) -> None:
    # Catalog actions before the versions they refer to.
    for table in ("case_state", "recommendation_facts", "executions", "catalog_actions"):
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    conn.execute("DELETE FROM policy_versions")
    conn.commit()


@pytest.mark.parametrize("seed", range(80))
def test_batched_merge_equals_one_upsert_per_event(
    two_schemas: tuple[psycopg.Connection, psycopg.Connection], seed: int
) -> None:
    ref, merged = two_schemas
    rng = random.Random(seed)
    history = random_history(rng, 80)
    _clear(ref)
    _clear(merged)
    with ref.cursor() as cur:
        for e in history:
            for statement, params in reference_steps(e):
                cur.execute(statement, params)  # type: ignore[arg-type]
    ref.commit()
    projections = [CaseStateProjection(), RecommendationFactsProjection()]
    with merged.transaction(), merged.cursor() as cur:
        for projection in projections:
            projection.prepare(cur)
    # Cut into batches of 1 to 20 events: a key's events split across batches meet a
    # stored row; within a batch they are folded first. Even seeds send the rows inline
    # (the live worker's small batches), odd ones by COPY through the staging tables.
    inline = seed % 2 == 0
    start = 0
    while start < len(history):
        size = rng.randint(1, 20)
        batch = [Envelope("t", 0, i, None, e) for i, e in enumerate(history[start : start + size])]
        with merged.transaction(), merged.cursor() as cur:
            for projection in projections:
                projection.apply(Load(cur, inline), projection.plan(batch))
        start += size
    for table in MERGED_TABLES:
        query = sql.SQL(
            "SELECT * FROM (TABLE {a} EXCEPT ALL TABLE {b}) x UNION ALL "
            "SELECT * FROM (TABLE {b} EXCEPT ALL TABLE {a}) y"
        ).format(a=sql.Identifier("ref", table), b=sql.Identifier("merged", table))
        differing = ref.execute(query).fetchall()
        assert differing == [], f"seed {seed}: {table} differs: {differing}"
    # The histories reach every table (a vacuous comparison would prove nothing).
    counts = ref.execute(
        "SELECT (SELECT count(*) FROM case_state), (SELECT count(*) FROM recommendation_facts), "
        "(SELECT count(*) FROM executions)"
    ).fetchone()
    assert counts is not None and all(counts)
