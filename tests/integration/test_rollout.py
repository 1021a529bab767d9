"""Evidence-gated phase changes on the real broker and database (issue 15, deliverable 1).

guard, approve, execute, the read models and the rollout processor run as processes; the
rollout judges every second (CASEGATE_ROLLOUT_INTERVAL_S=1). Case events are written to
`cases` directly (intake is not under test), recommendations are hand-made.

- A shadow workflow with good evidence is proposed once, refused to a non-supervisor and to
  a second approval by the same supervisor, promoted by a second supervisor (the next
  policy version, published by the processor), and its next case is decided as assisted.
- A bounded workflow whose executions fail (the downstream answers after the action's
  timeout) is demoted to assisted within the interval, once: no cascade to shadow.
- The kill switch demotes a workflow to shadow at once, with who and why.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from typer.testing import CliRunner

from cli.main import app as cli_app
from console.app import create_app
from console.auth import add_operator
from console.policy_topic import publish_policy
from infra.db import database_urls
from infra.kafka import make_producer, producer_config
from infra.kafka_auth import as_principal
from infra.settings import Settings
from policy.loader import load_policy_text
from projections.replay import differences, rebuild
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    CaseResolved,
    Event,
    GuardrailDecided,
    PolicyPublished,
    PromotionApprovalRecorded,
    PromotionApprovalSubmitted,
    PromotionProposed,
    RolloutRequestRefused,
    WorkflowDemoted,
    WorkflowPromoted,
    new_event_id,
    record_key,
    workflow_case_id,
)
from tests.integration.helpers import eventually, running
from tests.integration.pipeline import (
    Downstream,
    Tail,
    case_opened,
    policy_text,
    recommendation,
    send,
    wait_caught_up,
)
from tests.stack import Stack, env_for

COMPONENTS = (
    ("processors.worker", "guard"),
    ("processors.worker", "approve"),
    ("processors.worker", "execute"),
    ("projections.worker", "readmodels"),
    ("processors.worker", "rollout"),
)
INTERVAL_S = 1.0
RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
SYNC = ActionSpec(name="sync_profile", params={})


def rollout_policy(url: str) -> str:
    """The processor tests' policy with small evidence thresholds: shadow_wf promotes on 3
    matching cases; ops_wf (sync_profile, whose downstream answers after its 1 s timeout)
    is demoted when half of its last 4 executions (at least 3) failed."""
    text = policy_text(url, version="rt.1")
    shadow = "      reset_password: {mode: approve}\n  assisted_wf:"
    text = text.replace(
        shadow,
        "      reset_password: {mode: approve}\n"
        "    promotion: {min_sample: 3, min_acceptance_rate: 0.6, window_s: 3600}\n"
        "  assisted_wf:",
    )
    ops = "      switch_plan: {mode: auto}\n"
    text = text.replace(
        ops, ops + "    demotion: {last_executions: 4, min_sample: 3, max_failure_rate: 0.5}\n"
    )
    assert "promotion:" in text and "demotion:" in text
    return text


@dataclass
class Rig:
    settings: Settings
    codec: Codec
    out: Tail  # rollout, policy and decisions, from the beginning
    tokens: dict[str, str]
    producer: Producer

    def cases(self, *events: Event) -> None:
        """Case events straight onto `cases`, as intake re-publishes what it accepted."""
        for event in events:
            value, encoded = self.codec.encode(event)
            headers: list[tuple[str, str | bytes | None]] = list(encoded)
            self.producer.produce(
                self.settings.topic("cases"), key=record_key(event), value=value, headers=headers
            )
        assert self.producer.flush(30) == 0

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli_app, list(args), env=env_for(self.settings))
        return result.exit_code, result.output

    def decision(self, rec_id: str) -> GuardrailDecided:
        [decided] = self.out.wait(
            lambda: self.out.events(GuardrailDecided, recommendation_id=rec_id),
            what=f"the decision on {rec_id}",
        )
        return decided

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(database_urls(self.settings).app) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def rig(stack: Stack) -> Iterator[Rig]:
    settings = stack.isolated(rollout_interval_s=INTERVAL_S)
    codec = Codec.load()
    with Downstream() as downstream:
        publish_policy(settings, codec, load_policy_text(rollout_policy(downstream.url)), "tests")
        with psycopg.connect(database_urls(settings).app, autocommit=True) as conn:
            tokens = {
                name: add_operator(conn, name, roles, None, 3600)
                for name, roles in (
                    ("sam", ("supervisor",)),
                    ("bob", ("supervisor",)),
                    ("ada", ("agent",)),
                )
            }
        with running(settings, *COMPONENTS):
            out = Tail(settings, ("rollout", "policy", "decisions"))
            try:
                yield Rig(settings, codec, out, tokens, Producer(producer_config(settings)))
            finally:
                out.close()


def resolved(case_id: str, action: ActionSpec) -> CaseResolved:
    return CaseResolved(
        event_id=f"resolved-{case_id}",
        case_id=case_id,
        occurred_at=datetime.now(UTC),
        resolved_by="operator-1",
        resolution_code="fixed",
        category="account_access",
        actions_taken=(action,),
    )


def test_a_shadow_workflow_with_good_evidence_is_promoted_by_two_supervisors(rig: Rig) -> None:
    # Given three shadow cases whose recommended action is what operators then did
    for i in range(3):
        case = f"sh-{i}"
        rec = recommendation(case, RESET, queue="shadowq")
        rig.cases(case_opened(case, "shadowq"))
        send(rig.settings, rig.codec, [rec])
        assert rig.decision(rec.recommendation_id).outcome == "shadowed"
        rig.cases(resolved(case, RESET))

    # When the rollout judges the evidence: one proposal, with the figures it rests on
    [proposal] = rig.out.wait(
        lambda: rig.out.events(PromotionProposed, workflow="shadow_wf"),
        timeout_s=60,
        what="a promotion proposal for shadow_wf",
    )
    assert (proposal.from_phase, proposal.to_phase) == ("shadow", "assisted")
    assert (proposal.policy_version, proposal.sample, proposal.min_sample) == ("rt.1", 3, 3)
    acceptance = next(c for c in proposal.checks if c.name == "acceptance_rate")
    assert (acceptance.value, acceptance.threshold, acceptance.passed) == (1.0, 0.6, True)
    assert proposal.approvals_required == 2 and proposal.approver_roles == ("supervisor",)
    time.sleep(3 * INTERVAL_S)  # more intervals pass: still proposed once for this version
    rig.out.poll(0.5)
    assert len(rig.out.events(PromotionProposed, workflow="shadow_wf")) == 1
    eventually(
        lambda: rig.rows(
            "SELECT 1 FROM rollout_proposals WHERE proposal_id = %s", proposal.proposal_id
        ),
        what="the proposal in the read model",
    )

    # A non-supervisor is refused, and nothing is sent
    code, said = rig.cli("rollout", "approve", proposal.proposal_id, "--token", rig.tokens["ada"])
    assert code == 3, said
    assert "may not approve" in said and "supervisor" in said

    # One supervisor alone cannot promote: their approval counts once
    code, said = rig.cli("rollout", "approve", proposal.proposal_id, "--token", rig.tokens["sam"])
    assert code == 0, said
    rig.out.wait(
        lambda: rig.out.events(PromotionApprovalRecorded, actor="sam"),
        what="sam's approval recorded",
    )
    eventually(
        lambda: rig.rows(
            "SELECT 1 FROM rollout_proposals WHERE proposal_id = %s AND 'sam' = ANY (approvers)",
            proposal.proposal_id,
        ),
        what="sam's approval in the read model",
    )
    code, said = rig.cli("rollout", "approve", proposal.proposal_id, "--token", rig.tokens["sam"])
    assert code == 2 and "already" in said, said
    # ... and the processor refuses it too, should it get there another way
    again = PromotionApprovalSubmitted(
        event_id=new_event_id(),
        case_id=workflow_case_id("shadow_wf"),
        occurred_at=datetime.now(UTC),
        proposal_id=proposal.proposal_id,
        workflow="shadow_wf",
        policy_version="rt.1",
        actor="sam",
        roles=("supervisor",),
        via="test",
    )
    send(rig.settings, rig.codec, [again])
    [refused] = rig.out.wait(
        lambda: rig.out.events(RolloutRequestRefused, causation_id=again.event_id),
        what="the second approval by sam refused",
    )
    assert refused.reason.startswith("already_approved")
    assert rig.out.events(WorkflowPromoted) == []

    # When a second supervisor approves: promoted, through the next policy version
    code, said = rig.cli("rollout", "approve", proposal.proposal_id, "--token", rig.tokens["bob"])
    assert code == 0, said
    [promoted] = rig.out.wait(
        lambda: rig.out.events(WorkflowPromoted, workflow="shadow_wf"), what="the promotion"
    )
    assert promoted.approvers == ("sam", "bob") and promoted.policy_version == "rt.1+r1"
    [published] = rig.out.wait(
        lambda: rig.out.events(PolicyPublished, version="rt.1+r1"), what="the next policy"
    )
    new = load_policy_text(published.document).policy
    assert new.workflows["shadow_wf"].phase == "assisted"
    assert new.workflows["ops_wf"].phase == "bounded"  # nothing else changed

    # Then the workflow's next case is decided under the new phase
    rec = recommendation("sh-next", RESET, queue="shadowq")
    rig.cases(case_opened("sh-next", "shadowq"))
    send(rig.settings, rig.codec, [rec])
    decided = rig.decision(rec.recommendation_id)
    assert (decided.phase, decided.outcome, decided.policy_version) == (
        "assisted",
        "approval_required",
        "rt.1+r1",
    )

    # A late approval of the promoted proposal is refused, with the reason
    late = PromotionApprovalSubmitted(**_late(proposal))
    send(rig.settings, rig.codec, [late])
    [closed] = rig.out.wait(
        lambda: rig.out.events(RolloutRequestRefused, causation_id=late.event_id),
        what="a late approval refused",
    )
    assert closed.reason.startswith("proposal_closed")


def _late(proposal: PromotionProposed) -> dict[str, Any]:
    return {
        "event_id": new_event_id(),
        "case_id": workflow_case_id(proposal.workflow),
        "occurred_at": datetime.now(UTC),
        "proposal_id": proposal.proposal_id,
        "workflow": proposal.workflow,
        "policy_version": proposal.policy_version,
        "actor": "carol",
        "roles": ("supervisor",),
        "via": "test",
    }


def test_a_bounded_workflow_whose_executions_fail_is_demoted_within_the_interval(
    rig: Rig,
) -> None:
    # Given a bounded workflow whose automatic runs time out downstream
    for i in range(4):
        case = f"ops-{i}"
        rig.cases(case_opened(case, "ops"))
        send(rig.settings, rig.codec, [recommendation(case, SYNC, queue="ops")])
    failed_seen = eventually(
        lambda: (
            time.monotonic()
            if rig.rows(
                "SELECT count(*) FROM executions WHERE case_id LIKE 'ops-%%' AND status = 'failed' "
                "HAVING count(*) >= 3"
            )
            else None
        ),
        timeout_s=90,
        what="three failed executions in the read model",
    )
    # Then it is demoted one phase, by the trigger, within the configured interval
    [demoted] = rig.out.wait(
        lambda: rig.out.events(WorkflowDemoted, workflow="ops_wf"),
        timeout_s=30,
        what="the demotion of ops_wf",
    )
    took = time.monotonic() - failed_seen
    assert took < INTERVAL_S + 10, f"demoted {took:.1f}s after the failures were visible"
    print(f"ops_wf demoted {took:.2f}s after three failures were visible in the read models")
    assert (demoted.from_phase, demoted.to_phase) == ("bounded", "assisted")
    assert (demoted.trigger, demoted.actor) == ("failure_rate", "rollout")
    failure = next(c for c in demoted.checks if c.name == "failure_rate")
    assert failure.passed is False and failure.value is not None and failure.value > 0.5
    [published] = rig.out.wait(
        lambda: rig.out.events(PolicyPublished, version=demoted.policy_version),
        what="the demoting policy",
    )
    assert load_policy_text(published.document).policy.workflows["ops_wf"].phase == "assisted"

    # Its next case is decided as assisted, and the evidence that demoted it does not
    # demote it again (hysteresis: the new phase starts with no evidence)
    rec = recommendation("ops-next", SYNC, queue="ops")
    rig.cases(case_opened("ops-next", "ops"))
    send(rig.settings, rig.codec, [rec])
    assert rig.decision(rec.recommendation_id).phase == "assisted"
    time.sleep(4 * INTERVAL_S)
    wait_caught_up(rig.settings, "rollout", ("phase-requests",))
    rig.out.poll(0.5)
    assert len(rig.out.events(WorkflowDemoted, workflow="ops_wf")) == 1

    # Operations read why in the status
    code, said = rig.cli("rollout", "status")
    assert code == 0, said
    assert "WorkflowDemoted" in said and "failure_rate" in said


def test_the_kill_switch_demotes_to_shadow_at_once_with_who_and_why(rig: Rig) -> None:
    def kill(who: str) -> tuple[int, str]:
        return rig.cli(
            "rollout",
            "kill",
            "bounded_wf",
            "--reason",
            "adapter misbehaving",
            "--token",
            rig.tokens[who],
        )

    code, said = kill("ada")
    assert code == 3 and "may not" in said, said
    code, said = kill("sam")
    assert code == 0, said
    [killed] = rig.out.wait(
        lambda: rig.out.events(WorkflowDemoted, workflow="bounded_wf"), what="the kill"
    )
    assert (killed.from_phase, killed.to_phase, killed.trigger) == (
        "bounded",
        "shadow",
        "kill_switch",
    )
    assert (killed.actor, killed.reason) == ("sam", "adapter misbehaving")
    eventually(
        lambda: rig.rows(
            "SELECT 1 FROM audit_log WHERE event_type = 'WorkflowDemoted' AND actor = 'sam'"
        ),
        what="the kill in the audit log",
    )


def test_the_console_shows_why_and_refuses_a_non_supervisor(rig: Rig) -> None:
    settings = as_principal(rig.settings, "console")
    pool = ConnectionPool(database_urls(settings).app, min_size=1, max_size=2, open=True)
    producer = make_producer(settings)
    app = create_app(settings, conn_pool=pool, producer=producer, codec=rig.codec)
    try:
        with TestClient(app) as client:
            ada = {"Authorization": f"Bearer {rig.tokens['ada']}"}
            sam = {"Authorization": f"Bearer {rig.tokens['sam']}"}
            answer = client.post(
                "/api/rollout/workflows/assisted_wf/kill",
                headers=ada,
                json={"reason": "not mine to pull"},
            )
            assert answer.status_code == 403, answer.text
            assert "supervisor" in answer.json()["detail"]
            report = client.get("/api/rollout", headers=sam).json()
            ops = next(w for w in report["workflows"] if w["workflow"] == "ops_wf")
            assert ops["phase"] == "assisted"
            demoted = next(c for c in ops["history"] if c["event_type"] == "WorkflowDemoted")
            assert "failure_rate" in demoted["summary"]
            assert any(
                c["name"] == "failure_rate" and c["passed"] is False for c in demoted["checks"]
            )
            web = TestClient(app)
            signed = web.post("/sign-in", data={"token": rig.tokens["sam"]}, follow_redirects=False)
            assert signed.status_code == 303, signed.text
            page = web.get("/rollout")
            assert page.status_code == 200
            for shown in ("WorkflowDemoted", "failure_rate", "kill_switch", "adapter misbehaving"):
                assert shown in page.text, shown
    finally:
        producer.flush(10)
        pool.close()


def test_a_replay_rebuilds_the_rollout_read_models_equal_to_the_live_ones(rig: Rig) -> None:
    rebuild(rig.settings, rig.codec, schema="rebuild")
    with psycopg.connect(database_urls(rig.settings).app) as conn:
        found = differences(conn, "public", "rebuild")
        assert found["rollout_events"] == 0 and found["rollout_proposals"] == 0, found
        [(events,)] = conn.execute("SELECT count(*) FROM rebuild.rollout_events").fetchall()
        [(promoted,)] = conn.execute(
            "SELECT count(*) FROM rebuild.rollout_proposals WHERE status = 'promoted'"
        ).fetchall()
    assert events >= 10 and promoted == 1
