"""The rollout's pure rules (policy.rollout_rules) and the rollout processor's handler, no broker:
when a workflow qualifies, when a trigger fires, why it does not flap, the two-person rule
bound to the policy version, and the kill switch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from policy.loader import LoadedPolicy, PolicyInvalid, diff_policies, load_policy_text
from policy.rollout_rules import (
    Evidence,
    Recent,
    evaluate,
    next_version,
    phase_versions,
    readiness,
    rephased,
)
from processors.handler import Outbox, Step
from processors.rollout import Rollout
from processors.store import MemoryStore, Overlay
from schemas.codec import Codec
from schemas.events import (
    Event,
    KillSwitchPulled,
    PolicyPublished,
    PromotionApprovalRecorded,
    PromotionApprovalSubmitted,
    PromotionProposed,
    RolloutRequestRefused,
    WorkflowDemoted,
    WorkflowPromoted,
    workflow_case_id,
)
from tests.integration.pipeline import policy_text
from tests.unit.test_processor_handlers import inbound

CODEC = Codec.load()
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TEXT = policy_text("http://127.0.0.1:9", version="v1").replace(
    "      reset_password: {mode: approve}\n  assisted_wf:",
    "      reset_password: {mode: approve}\n"
    "    promotion: {min_sample: 3, min_acceptance_rate: 0.6}\n"
    "  assisted_wf:",
)
POLICY = load_policy_text(TEXT)
SHADOW = POLICY.policy.workflows["shadow_wf"]  # min sample 3, acceptance >= .6
ASSISTED = POLICY.policy.workflows["assisted_wf"]  # defaults: sample 100, .8, .1, .02
OPS = POLICY.policy.workflows["ops_wf"]  # bounded; default triggers
GOOD_SHADOW = Evidence(with_action=4, action_matches=3)
GOOD_ASSISTED = Evidence(decided=150, reviewed=120, accepted=110, overridden=5, executions=100)


# --- evaluation ----------------------------------------------------------------------------


def test_a_shadow_workflow_with_enough_matching_cases_qualifies_for_assisted() -> None:
    verdict = evaluate(SHADOW, GOOD_SHADOW, Recent(), proposed=False)
    assert (verdict.action, verdict.to_phase) == ("propose", "assisted")
    assert verdict.readiness is not None and verdict.readiness.sample == 4


@pytest.mark.parametrize(
    ("evidence", "why"),
    [
        (Evidence(with_action=2, action_matches=2), "not ready: sample 2 of 3 needed"),
        (Evidence(with_action=4, action_matches=1), "acceptance rate outside"),
    ],
)
def test_a_shadow_workflow_without_the_evidence_holds(evidence: Evidence, why: str) -> None:
    verdict = evaluate(SHADOW, evidence, Recent(), proposed=False)
    assert verdict.action == "hold" and why in verdict.why


def test_an_assisted_workflow_is_held_by_each_failed_criterion() -> None:
    assert evaluate(ASSISTED, GOOD_ASSISTED, Recent(), False).to_phase == "bounded"
    for bad, name in (
        (replace(GOOD_ASSISTED, overridden=30), "override rate"),
        (replace(GOOD_ASSISTED, executions_failed=5), "error rate"),
        (replace(GOOD_ASSISTED, executions_rolled_back=3, executions_failed=1), "rollback rate"),
        (
            replace(
                GOOD_ASSISTED,
                cases_resolved=100,
                cases_reopened=20,
                baseline_resolved=100,
                baseline_reopened=10,
            ),
            "reopen rate",
        ),
        (replace(GOOD_ASSISTED, audit_gaps=1), "audit gaps"),
    ):
        verdict = evaluate(ASSISTED, bad, Recent(), False)
        assert verdict.action == "hold" and name in verdict.why, (name, verdict.why)


def test_a_reopen_rate_at_the_unassisted_baseline_passes() -> None:
    same = replace(
        GOOD_ASSISTED,
        cases_resolved=100,
        cases_reopened=10,
        baseline_resolved=50,
        baseline_reopened=5,
    )
    assert evaluate(ASSISTED, same, Recent(), False).action == "propose"


def test_a_qualifying_workflow_is_proposed_once_per_policy_version() -> None:
    assert evaluate(SHADOW, GOOD_SHADOW, Recent(), proposed=True).action == "hold"


def test_a_failure_trigger_demotes_one_phase_and_wins_over_a_promotion() -> None:
    failing = Recent(executions=20, failed=6, decisions=20)  # .3 > .25
    verdict = evaluate(ASSISTED, GOOD_ASSISTED, failing, proposed=False)
    assert (verdict.action, verdict.to_phase) == ("demote", "shadow")
    [fired] = [c for c in verdict.checks if c.passed is False]
    assert (fired.name, fired.value, fired.threshold) == ("failure_rate", 0.3, 0.25)
    assert evaluate(OPS, Evidence(), failing, False).to_phase == "assisted"


@pytest.mark.parametrize(
    ("recent", "fires"),
    [
        (Recent(executions=4, failed=4), False),  # fewer than min_sample (5): no verdict
        (Recent(executions=5, failed=1), False),  # .2 <= .25
        (Recent(executions=10, failed=3, rolled_back=3), True),  # rollback .3 > .2
        (Recent(decisions=10, denied=9), False),  # the denial trigger is off by default
    ],
)
def test_demotion_triggers(recent: Recent, fires: bool) -> None:
    assert (evaluate(OPS, Evidence(), recent, False).action == "demote") is fires


def test_a_denial_trigger_fires_when_the_policy_sets_one() -> None:
    strict = OPS.model_copy(
        update={"demotion": OPS.demotion.model_copy(update={"max_denial_rate": 0.5})}
    )
    assert evaluate(strict, Evidence(), Recent(decisions=10, denied=6), False).action == "demote"
    assert evaluate(strict, Evidence(), Recent(decisions=10, denied=5), False).action == "hold"


def test_a_shadow_workflow_is_never_demoted() -> None:
    verdict = evaluate(SHADOW, Evidence(), Recent(executions=10, failed=10), False)
    assert verdict.action == "hold"


def test_evidence_counts_only_the_versions_since_the_phase_began() -> None:
    # Hysteresis: once demoted, the failures that caused it are of another phase.
    v2 = rephased(POLICY, "ops_wf", "assisted", "v1+r1", "demoted")
    v3 = rephased(v2, "shadow_wf", "assisted", "v1+r2", "promoted")
    assert phase_versions([POLICY, v2, v3], "ops_wf") == ["v1+r2", "v1+r1"]
    assert phase_versions([POLICY, v2, v3], "bounded_wf") == ["v1+r2", "v1+r1", "v1"]
    assert phase_versions([POLICY, v2, v3], "shadow_wf") == ["v1+r2"]


def refusals(text: str) -> list[tuple[str, str]]:
    """The (path, message) pairs a policy document is refused with (it must be refused)."""
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(text)
    return caught.value.errors


def test_demotion_thresholds_at_or_below_the_promotion_ones_are_refused() -> None:
    flapping = TEXT.replace(
        "      switch_plan: {mode: auto}\n",
        "      switch_plan: {mode: auto}\n    demotion: {max_failure_rate: 0.01}\n",
    )
    [(path, message)] = refusals(flapping)
    assert path == "workflows.ops_wf"
    assert "demotion.max_failure_rate 0.01 must be above promotion.max_error_rate 0.02" in message


def test_a_policy_without_rollout_settings_loads_with_the_defaults() -> None:
    ops = load_policy_text(policy_text("http://127.0.0.1:9")).policy.workflows["ops_wf"]
    assert ops.promotion.approvals == 2 and ops.promotion.approver_roles == ("supervisor",)
    assert ops.demotion.max_failure_rate == 0.25


def test_unknown_approver_roles_and_a_one_person_rule_are_refused() -> None:
    bad = TEXT.replace(
        "promotion: {min_sample: 3, min_acceptance_rate: 0.6}",
        "promotion: {approvals: 1, approver_roles: [chief]}",
    )
    paths = dict(refusals(bad))
    assert "workflows.shadow_wf.promotion.approvals" in paths


def test_the_readiness_shown_in_the_console_is_the_same_evaluator() -> None:
    from console.api.readiness import readiness as api_readiness

    row = {"reviewed": 120, "accepted": 110, "overridden": 5, "executions": 100}
    assert api_readiness(ASSISTED, row, None).verdict == readiness(ASSISTED, GOOD_ASSISTED).verdict


def test_rephasing_changes_the_phase_and_the_version_only() -> None:
    new = rephased(POLICY, "shadow_wf", "assisted", next_version("v1", {"v1"}), "note")
    assert new.version == "v1+r1"
    assert diff_policies(POLICY, new) == [
        "version: v1 -> v1+r1",
        "workflows.shadow_wf.phase: shadow -> assisted",
    ]
    assert next_version("v1+r1", {"v1", "v1+r1"}) == "v1+r2"


# --- the handler ---------------------------------------------------------------------------


class Rig:
    """The rollout handler with a fixed evidence source, stepped as the loop steps it."""

    def __init__(self, evidence: dict[str, tuple[Evidence, Recent]]) -> None:
        self.evidence = evidence
        self.handler = Rollout(lambda history, now: self.evidence, every_s=1.0)
        self.store = MemoryStore()
        self.history: dict[str, LoadedPolicy] = {POLICY.version: POLICY}

    @property
    def policy(self) -> LoadedPolicy:
        return list(self.history.values())[-1]

    def _step(self, run: object) -> list[Event]:
        out = Outbox(CODEC, "t.", "t.rollout")
        overlay = Overlay(self.store)
        step = Step(overlay, out, self.policy, NOW, 6, dict(self.history))
        run(step)  # type: ignore[operator]
        self.store.apply(overlay.changes())
        events = [CODEC.decode(r.value, r.headers) for r in out.records]
        for e in events:
            if isinstance(e, PolicyPublished):
                assert [r.key for r in out.records if r.topic == "t.policy"] == [e.version.encode()]
        return events

    def tick(self) -> list[Event]:
        return self._step(self.handler.every)

    def send(self, *requests: Event) -> list[Event]:
        batch = [inbound(r, "phase-requests", partition=0, at=NOW) for r in requests]
        return self._step(lambda step: self.handler.handle(batch, step))

    def adopt(self, events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, PolicyPublished):
                self.history[e.version] = load_policy_text(e.document)


def approval(proposal: PromotionProposed, actor: str, roles: tuple[str, ...], n: int = 0) -> Event:
    return PromotionApprovalSubmitted(
        event_id=f"approval-{actor}-{n}",
        case_id=workflow_case_id(proposal.workflow),
        occurred_at=NOW,
        proposal_id=proposal.proposal_id,
        workflow=proposal.workflow,
        policy_version=proposal.policy_version,
        actor=actor,
        roles=roles,
        via="test",
    )


def only(events: Sequence[Event], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def test_two_distinct_supervisors_promote_and_the_next_version_is_published() -> None:
    rig = Rig({"shadow_wf": (GOOD_SHADOW, Recent())})
    [proposal] = only(rig.tick(), PromotionProposed)
    assert only(rig.tick(), PromotionProposed) == []  # once per version
    sup = ("supervisor",)

    agent = rig.send(approval(proposal, "ada", ("agent",)))
    assert only(agent, RolloutRequestRefused)[0].reason.startswith("not_permitted")
    first = rig.send(approval(proposal, "sam", sup))
    assert only(first, PromotionApprovalRecorded)[0].approvals_received == 1
    again = rig.send(approval(proposal, "sam", sup, n=1))
    assert only(again, RolloutRequestRefused)[0].reason.startswith("already_approved")
    system = rig.send(approval(proposal, "rollout", sup))
    assert only(system, RolloutRequestRefused)[0].reason.startswith("proposer_cannot_approve")
    assert only(first + again + system, WorkflowPromoted) == []

    second = rig.send(approval(proposal, "bob", sup))
    [promoted] = only(second, WorkflowPromoted)
    [published] = only(second, PolicyPublished)
    assert promoted.approvers == ("sam", "bob") and published.version == "v1+r1"
    assert load_policy_text(published.document).policy.workflows["shadow_wf"].phase == "assisted"
    # Until the new version is read back, nothing else changes from the old one.
    assert rig.tick() == []
    rig.adopt(second)
    late = rig.send(approval(proposal, "carol", sup))
    assert only(late, RolloutRequestRefused)[0].reason.startswith("proposal_closed")


def test_a_proposal_of_an_older_policy_version_is_stale() -> None:
    rig = Rig({"shadow_wf": (GOOD_SHADOW, Recent())})
    [proposal] = only(rig.tick(), PromotionProposed)
    newer = rephased(POLICY, "bounded_wf", "assisted", "v2", "by hand")
    rig.history[newer.version] = newer
    refused = rig.send(approval(proposal, "sam", ("supervisor",)))
    assert only(refused, RolloutRequestRefused)[0].reason.startswith("stale_proposal")
    # ... and the workflow is proposed again under the version in force
    [again] = only(rig.tick(), PromotionProposed)
    assert again.policy_version == "v2" and again.proposal_id != proposal.proposal_id


def test_a_trigger_demotes_at_once_and_not_again_on_the_same_evidence() -> None:
    failing = Recent(executions=20, failed=10)
    rig = Rig({"ops_wf": (Evidence(), failing)})
    events = rig.tick()
    [demoted] = only(events, WorkflowDemoted)
    [published] = only(events, PolicyPublished)
    assert (demoted.to_phase, demoted.trigger, demoted.policy_version) == (
        "assisted",
        "failure_rate",
        published.version,
    )
    rig.adopt(events)
    # The source now reports the new phase's own (empty) stint: nothing fires.
    rig.evidence = {"ops_wf": (Evidence(), Recent())}
    assert only(rig.tick(), WorkflowDemoted) == []


def test_the_kill_switch_needs_a_supervisor_and_a_reason_and_goes_to_shadow() -> None:
    rig = Rig({})

    def kill(actor: str, roles: tuple[str, ...], reason: str, wf: str = "ops_wf") -> list[Event]:
        return rig.send(
            KillSwitchPulled(
                event_id=f"kill-{actor}-{wf}-{reason[:3]}",
                case_id=workflow_case_id(wf),
                occurred_at=NOW,
                workflow=wf,
                actor=actor,
                roles=roles,
                reason=reason,
                via="test",
            )
        )

    assert only(kill("ada", ("agent",), "broken"), RolloutRequestRefused)[0].reason.startswith(
        "not_permitted"
    )
    assert only(kill("sam", ("supervisor",), "  "), RolloutRequestRefused)
    assert only(kill("sam", ("supervisor",), "x", "shadow_wf"), RolloutRequestRefused)[
        0
    ].reason.startswith("already_shadow")
    events = kill("sam", ("supervisor",), "double charges")
    [demoted] = only(events, WorkflowDemoted)
    assert (demoted.to_phase, demoted.trigger, demoted.actor, demoted.reason) == (
        "shadow",
        "kill_switch",
        "sam",
        "double charges",
    )
    assert (
        load_policy_text(only(events, PolicyPublished)[0].document).policy.workflows["ops_wf"].phase
        == "shadow"
    )
