"""Issue 16's acceptance: every process's /metrics counts what really flowed (records in =
records produced upstream of it, dead letters = the bad records sent, lag back to 0), and
one case is one trace across intake, recommend, guard, approve and the read models.

The whole pipeline runs with metrics on a free base port and CASEGATE_TRACING=console
(spans as JSON lines in each process's log). The upstream case starts its trace itself,
with a `traceparent` header, as an instrumented upstream service would.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from cli.main import app as cli_app
from console.policy_topic import publish_policy
from infra.db import database_urls
from infra.kafka import producer_config
from infra.settings import Settings
from infra.telemetry import metrics_port
from policy.loader import load_policy_text
from schemas.codec import Codec
from schemas.events import ActionSpec, record_key
from tests.integration.helpers import OUTPUT, eventually, running
from tests.integration.pipeline import Downstream, case_opened, policy_text, recommendation, send
from tests.stack import Stack, env_for

CASES = 60
GARBAGE = 3
# Recommendations produced straight to the guard's topic (as test_guard_approve_execute
# does) for billing cases: the recommender has no history here, so it abstains, and these
# are what put items in the approval queue.
PROPOSED = 10
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()
COMPONENTS = ("intake", "recommend", "guard", "approve", "execute", "readmodels")


def free_base() -> int:
    """A base port whose seven /metrics ports (+1…+7) are free now."""
    for base in range(19_400, 29_000, 100):
        ports = [base + offset for offset in range(1, 8)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free range of metrics ports")


def scrape(settings: Settings, component: str) -> dict[str, float]:
    """Every sample of the component's /metrics, by `name{label=value,…}` (labels sorted)."""
    url = f"http://127.0.0.1:{metrics_port(settings, component)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if key.split("{")[0] == name and all(w in key for w in want)
    )


@pytest.fixture
def observed(stack: Stack) -> Iterator[Settings]:
    settings = stack.isolated(metrics_port=free_base(), tracing="console")
    codec = Codec.load()
    with Downstream() as downstream:
        publish_policy(settings, codec, load_policy_text(policy_text(downstream.url)), "tests")
        producer = Producer(producer_config(settings))
        for i in range(CASES):
            # Half to the assisted billing workflow (approval items), half to shadow.
            event = case_opened(f"ops-{i:03d}", "billing" if i % 2 else "shadowq")
            value, headers = codec.encode(event)
            extra = [("traceparent", TRACEPARENT)] if i == 1 else []
            producer.produce(
                settings.topic("upstream"),
                key=record_key(event),
                value=value,
                headers=[*headers, *extra],
            )
        for j in range(GARBAGE):
            producer.produce(settings.topic("upstream"), key=f"junk-{j}".encode(), value=b"junk")
        assert producer.flush(30) == 0
        plan = ActionSpec(name="change_plan", params={"plan": "pro"})
        send(
            settings,
            codec,
            [recommendation(f"prop-{i:03d}", plan, queue="billing") for i in range(PROPOSED)],
        )
        with running(
            settings,
            *(
                ("projections.worker" if c == "readmodels" else "processors.worker", c)
                for c in COMPONENTS
            ),
        ):
            yield settings


def test_metrics_count_what_flowed_and_lag_returns_to_zero(observed: Settings) -> None:
    def settled() -> dict[str, dict[str, float]] | None:
        try:
            got = {c: scrape(observed, c) for c in COMPONENTS}
        except OSError:
            return None
        done = total(got["readmodels"], "casegate_readmodel_events_total", topic="decisions")
        lag = sum(total(m, "casegate_consumer_lag") for m in got.values())
        # The pending gauge is sampled once a second, after the batch that opened the
        # items committed: wait for a sample that has seen them (asserted exactly below).
        seen = total(got["approve"], "casegate_approvals_pending") >= PROPOSED
        return got if done >= CASES + PROPOSED and lag == 0 and seen else None

    got = eventually(settled, timeout_s=180, what="every case decided and projected, lag 0")

    intake, recommend, guard = got["intake"], got["recommend"], got["guard"]
    # Records in = records produced upstream of each stage; the bad ones dead-lettered.
    assert total(intake, "casegate_records_consumed_total", topic="upstream") == CASES + GARBAGE
    assert total(intake, "casegate_dead_letters_total", reason="UndecodableRecord") == GARBAGE
    assert total(intake, "casegate_records_produced_total", topic="cases") == CASES
    assert total(recommend, "casegate_records_consumed_total", topic="cases") == CASES
    assert total(recommend, "casegate_records_produced_total", topic="recommendations") == CASES
    decided = CASES + PROPOSED
    assert total(guard, "casegate_records_consumed_total", topic="recommendations") == decided
    assert total(guard, "casegate_events_produced_total", event_type="GuardrailDecided") == decided
    assert total(got["approve"], "casegate_records_consumed_total", topic="decisions") == decided
    # The proposed changes wait for an approver: the approve processor's gauge says so.
    assert total(got["approve"], "casegate_approvals_pending") == PROPOSED
    for component in ("recommend", "guard", "approve", "execute"):
        assert total(got[component], "casegate_policy_version_info", version="test.1") == 1
    assert total(got["readmodels"], "casegate_readmodel_events_total", topic="cases") == CASES
    assert total(got["readmodels"], "casegate_records_consumed_total", topic="decisions") == decided
    assert total(got["readmodels"], "casegate_dead_letters_total") == 0
    assert total(got["readmodels"], "casegate_readmodel_batch_rows_count") >= 1

    # `casegate status` reads the same endpoints: every component up, nothing behind.
    wide = {**env_for(observed), "COLUMNS": "200"}  # one row per line, nothing wrapped
    result = CliRunner().invoke(cli_app, ["status"], env=wide)
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "-0 " in line}
    for component in COMPONENTS:
        assert "up" in rows[f"{component}-0"].split(), result.output


def test_one_case_is_one_trace_across_every_stage(observed: Settings) -> None:
    def spans() -> list[dict[str, object]] | None:
        found = []
        for component in COMPONENTS:
            log = OUTPUT / f"{observed.topic_prefix}{component}.log"
            if not log.exists():
                return None
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{") and TRACE_ID in line:
                    found.append(json.loads(line))
        names = {s["name"] for s in found}
        return found if {"intake", "recommend", "guard", "approve", "readmodels"} <= names else None

    found = eventually(spans, timeout_s=180, what="spans of the traced case from every stage")

    assert {s["context"]["trace_id"] for s in found} == {f"0x{TRACE_ID}"}  # type: ignore[index]
    assert {s["attributes"]["casegate.case_id"] for s in found} == {"ops-001"}  # type: ignore[index]
    # Each stage's span is the child of the one before it: one chain, not a flat list.
    by_id = {s["context"]["span_id"]: s for s in found}  # type: ignore[index]
    parents = [s["parent_id"] for s in found if s["name"] == "guard"]
    assert parents and all(p in by_id and by_id[p]["name"] == "recommend" for p in parents)


def test_the_case_timeline_keeps_the_trace_id(observed: Settings) -> None:
    """The read models store the trace id each event's record carried: the case trace page
    shows (and, with CASEGATE_TRACE_LINK, links) the one trace of the case."""

    def trace_ids() -> set[str] | None:
        with psycopg.connect(database_urls(observed).app) as conn:
            rows = conn.execute(
                "SELECT event_type, trace_id FROM case_timeline WHERE case_id = 'ops-001'"
            ).fetchall()
        types = {t for t, _ in rows}
        return {i for _, i in rows} if {"CaseOpened", "GuardrailDecided"} <= types else None

    assert eventually(trace_ids, timeout_s=120, what="ops-001's timeline") == {TRACE_ID}
