"""Policy dry-run on a recorded history, on the real broker and database (issue 15).

Given recommendations decided by the guard under `dry.1` and projected into the read
models, when `casegate policy dry-run` tries a candidate that loosens two bounds, then the
report names exactly the decisions that change (counts and case ids), every topic keeps
the records it had (nothing was published), and `policy publish` asks for that dry-run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from cli.main import app as cli_app
from console.auth import add_operator, form_token
from console.policy_topic import publish_policy, read_policies
from console.web.session import COOKIE
from infra.db import database_urls
from infra.kafka import consumer_config
from infra.settings import Settings
from infra.topics import TOPICS
from policy.loader import load_policy_text
from schemas.codec import Codec
from schemas.events import ActionSpec, PolicyPublished
from tests.integration.helpers import console_app, eventually, running, scalar, signed_in
from tests.integration.pipeline import policy_text, recommendation, send
from tests.stack import env_for

URL = "http://127.0.0.1:9"  # never called: nothing executes in this test


def refund(amount: float) -> ActionSpec:
    return ActionSpec(name="refund_payment", params={"amount": amount, "order_id": "ORD-1"})


def reset(method: str) -> ActionSpec:
    return ActionSpec(name="reset_password", params={"method": method})


# case id -> (queue, action): assisted_wf (billing) denies refunds above 200;
# lenient_wf (identity2) sends an sms_code reset, outside its bounds, for approval.
HISTORY = {
    "dr-refund-150": ("billing", refund(150)),
    "dr-refund-250": ("billing", refund(250)),
    "dr-refund-300": ("billing", refund(300)),
    "dr-refund-450": ("billing", refund(450)),
    "dr-reset-sms-1": ("identity2", reset("sms_code")),
    "dr-reset-sms-2": ("identity2", reset("sms_code")),
    "dr-reset-email": ("identity2", reset("email_link")),
    "dr-shadow": ("shadowq", reset("email_link")),
}


def candidate_text() -> str:
    """dry.2: refunds up to 350 in billing, sms_code resets inside lenient_wf's bounds."""
    text = policy_text(URL, version="dry.2")
    loosened = text.replace("bounds: {amount: {max: 200}}", "bounds: {amount: {max: 350}}").replace(
        "    match: {queue: identity2}\n    phase: bounded\n    actions:\n      reset_password:\n"
        "        mode: auto\n        bounds: {method: {values: [email_link]}}",
        "    match: {queue: identity2}\n    phase: bounded\n    actions:\n      reset_password:\n"
        "        mode: auto\n        bounds: {method: {values: [email_link, sms_code]}}",
    )
    assert loosened.count("max: 350") == 1 and "[email_link, sms_code]" in loosened
    return loosened


def watermarks(settings: Settings) -> dict[str, int]:
    """Records on each topic (the sum of its partitions' high watermarks)."""
    consumer = Consumer(consumer_config(settings, f"test-marks-{uuid.uuid4()}"))
    try:
        marks = {}
        for spec in TOPICS:
            name = settings.topic(spec.name)
            parts = consumer.list_topics(name, timeout=10).topics[name].partitions
            marks[spec.name] = sum(
                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for p in parts
            )
        return marks
    finally:
        consumer.close()


def record_history(settings: Settings, codec: Codec) -> None:
    """HISTORY decided by the guard under dry.1 and projected by the read models."""
    publish_policy(settings, codec, load_policy_text(policy_text(URL, version="dry.1")), "tests")
    recs = [recommendation(case, action, queue=queue) for case, (queue, action) in HISTORY.items()]
    with running(settings, ("processors.worker", "guard"), ("projections.worker", "readmodels")):
        send(settings, codec, list(recs))
        with psycopg.connect(database_urls(settings).app) as conn:
            recorded = eventually(
                lambda: _all_decided(conn), what="every recommendation decided and projected"
            )
            # Wait until the read models have taken every policy version too.
            eventually(
                lambda: conn.execute("SELECT count(*) FROM policy_versions").fetchone()[0] == 1,
                what="the policy projected",
            )
    assert recorded == {
        "dr-refund-150": "approval_required",
        "dr-refund-250": "denied",
        "dr-refund-300": "denied",
        "dr-refund-450": "denied",
        "dr-reset-sms-1": "approval_required",
        "dr-reset-sms-2": "approval_required",
        "dr-reset-email": "auto_authorized",
        "dr-shadow": "shadowed",
    }


def test_a_loosened_bound_reports_exactly_the_changed_decisions_and_publishes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    codec = Codec.load()
    record_history(settings, codec)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(candidate_text())
    before = watermarks(settings)
    cli, env = CliRunner(), env_for(settings)

    # The table first; the JSON run after it is the latest dry-run, the one publish cites.
    table = cli.invoke(cli_app, ["policy", "dry-run", str(candidate), "--since", "1h"], env=env)
    assert table.exit_code == 0, table.output
    assert "8 decision(s), 4 would change: 2 approval_required → auto_authorized; 2 denied" in (
        table.stdout.replace("\n", " ")
    )

    result = cli.invoke(
        cli_app, ["policy", "dry-run", str(candidate), "--since", "1h", "--json"], env=env
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["decisions"], report["changed"]) == (len(HISTORY), 4)
    assert report["changes"] == [
        {"from": "approval_required", "to": "auto_authorized", "count": 2},
        {"from": "denied", "to": "approval_required", "count": 2},
    ]
    groups = {(g["workflow"], g["issue_class"]): g for g in report["groups"]}
    billing = groups[("assisted_wf", "-")]
    assert (billing["decisions"], billing["changed"]) == (4, 2)
    assert billing["changes"] == [
        {
            "from": "denied",
            "to": "approval_required",
            "count": 2,
            "example_case_ids": ["dr-refund-250", "dr-refund-300"],
        }
    ]
    lenient = groups[("lenient_wf", "-")]
    assert (lenient["decisions"], lenient["changed"]) == (3, 2)
    assert lenient["changes"][0]["example_case_ids"] == ["dr-reset-sms-1", "dr-reset-sms-2"]
    assert groups[("shadow_wf", "-")]["changed"] == 0
    # Nothing was published: every topic holds exactly the records it held before.
    assert watermarks(settings) == before
    current = read_policies(settings, codec)[0]
    assert current is not None and current.version == "dry.1"
    # The report was recorded under the candidate's digest, for publish to find.
    with psycopg.connect(database_urls(settings).app) as conn:
        kept = conn.execute(
            "SELECT candidate_version, baseline_version, decisions, changed "
            "FROM policy_dry_runs WHERE dry_run_id = %s",
            (report["dry_run_id"],),
        ).fetchone()
    assert kept == ("dry.2", "dry.1", len(HISTORY), 4)

    published = cli.invoke(
        cli_app, ["policy", "publish", str(candidate), "--author", "ops"], env=env
    )

    assert published.exit_code == 0, published.output
    [event] = [e for e in _policies(settings, codec) if e.version == "dry.2"]
    assert event.dry_run == report["dry_run_id"]


def test_publish_refuses_a_candidate_nobody_dry_ran_unless_told_and_records_the_override(
    settings: Settings, tmp_path: Path
) -> None:
    codec = Codec.load()
    publish_policy(settings, codec, load_policy_text(policy_text(URL, version="dry.1")), "tests")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(candidate_text())
    cli, env = CliRunner(), env_for(settings)
    before = watermarks(settings)["policy"]

    refused = cli.invoke(cli_app, ["policy", "publish", str(candidate)], env=env)

    assert refused.exit_code == 2
    assert "no dry-run of" in refused.stderr and "casegate policy dry-run" in refused.stderr
    assert watermarks(settings)["policy"] == before

    # A dry-run made while another policy was in force does not count either.
    ran = cli.invoke(cli_app, ["policy", "dry-run", str(candidate), "--since", "1h"], env=env)
    assert ran.exit_code == 0, ran.output
    publish_policy(settings, codec, load_policy_text(policy_text(URL, version="dry.1b")), "ops")
    stale = cli.invoke(cli_app, ["policy", "publish", str(candidate)], env=env)
    assert stale.exit_code == 2 and "against the policy in force (dry.1b)" in stale.stderr

    forced = cli.invoke(
        cli_app, ["policy", "publish", str(candidate), "--without-dry-run"], env=env
    )

    assert forced.exit_code == 0, forced.output
    [event] = [e for e in _policies(settings, codec) if e.version == "dry.2"]
    assert event.dry_run == "skipped"


def _all_decided(conn: psycopg.Connection) -> dict[str, str] | None:
    rows = conn.execute(
        "SELECT case_id, outcome FROM recommendation_facts WHERE outcome IS NOT NULL"
    ).fetchall()
    return dict(rows) if len(rows) == len(HISTORY) else None


def _policies(settings: Settings, codec: Codec) -> list[PolicyPublished]:
    """Every PolicyPublished on the policy topic."""
    from tests.integration.helpers import read_topic

    name = "policy"
    count = watermarks(settings)[name]
    return [
        e
        for m in read_topic(settings, name, count)
        if isinstance(e := codec.decode(m.value(), m.headers()), PolicyPublished)
    ]


def test_the_policy_page_shows_the_dry_run_before_a_publish_and_publishes_that_one(
    settings: Settings,
) -> None:
    codec = Codec.load()
    record_history(settings, codec)
    with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
        tokens = {
            name: add_operator(conn, name, roles, None, ttl_s=3600)
            for name, roles in (("adm", ("admin",)), ("ann", ("agent",)))
        }
    with console_app(settings, codec, max_size=2) as app:
        pages = {name: signed_in(app, token) for name, token in tokens.items()}
        adm, ann = pages["adm"], pages["ann"]
        form = form_token(adm.cookies[COOKIE])
        before = watermarks(settings)

        shown = adm.post(
            "/policy/dry-run",
            data={"form_token": form, "candidate": candidate_text(), "since": "1h"},
        )

        assert shown.status_code == 200, shown.text
        assert "<strong>8</strong> decision(s), <strong>4</strong>" in shown.text
        assert "2 denied → approval_required" in shown.text
        for case_id in ("dr-refund-250", "dr-refund-300", "dr-reset-sms-1", "dr-reset-sms-2"):
            assert f">{case_id}</a>" in shown.text
        assert watermarks(settings) == before  # the dry-run published nothing
        dry_run_id = scalar(settings, "SELECT dry_run_id FROM policy_dry_runs WHERE ran_by = 'adm'")
        assert f'name="dry_run_id" value="{dry_run_id}"' in shown.text
        # An agent may look, not publish.
        refused = ann.post(
            "/policy/publish",
            data={"form_token": form_token(ann.cookies[COOKIE]), "dry_run_id": dry_run_id},
        )
        assert refused.status_code == 403

        published = adm.post("/policy/publish", data={"form_token": form, "dry_run_id": dry_run_id})

        assert published.status_code == 200, published.text
        assert "published policy dry.2" in published.text
        [event] = [e for e in _policies(settings, codec) if e.version == "dry.2"]
        assert (event.dry_run, event.author) == (dry_run_id, "adm")
        assert event.sha256 == load_policy_text(candidate_text()).sha256
