"""Rollout decisions, pure: is a workflow ready for its next phase, must it be demoted,
and the policy document that changes its phase.

One evaluator for the console's readiness and for the rollout processor
(processors/rollout.py). Evidence is counts (the rates are computed here, from them), so
any source can fill it: the console's all-time metrics rows, or the processor's windowed
query over the decisions made since the workflow entered its current phase.

Hysteresis, so a workflow does not flap: evidence only counts what was decided since the
workflow entered its phase (`phase_versions`), so after a demotion it earns its promotion
again from nothing, and a demotion never cascades on the evidence that caused it; a
demotion trigger wins over a promotion in the same evaluation; and the policy refuses
demotion thresholds at or below the promotion ones (policy.workflow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from policy.loader import LoadedPolicy, diff_policies, load_policy_text
from policy.model import Workflow

NEXT_PHASE: dict[str, str | None] = {"shadow": "assisted", "assisted": "bounded", "bounded": None}
PREVIOUS_PHASE: dict[str, str | None] = {
    "bounded": "assisted",
    "assisted": "shadow",
    "shadow": None,
}
Comparison = Literal[">=", "<="]


@dataclass(frozen=True, slots=True)
class Check:
    """One criterion: the value against its threshold; `passed` is None without data."""

    name: str
    comparison: Comparison
    threshold: float
    value: float | None
    passed: bool | None
    basis: str


def check(name: str, comparison: Comparison, threshold: float, value: Any, basis: str) -> Check:
    number = None if value is None else float(value)
    passed = None
    if number is not None:
        passed = number >= threshold if comparison == ">=" else number <= threshold
    return Check(name, comparison, threshold, number, passed, basis)


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the read models say about a workflow in its current phase (counts)."""

    decided: int = 0
    denied: int = 0
    reviewed: int = 0
    accepted: int = 0
    overridden: int = 0
    executions: int = 0
    executions_failed: int = 0
    executions_rolled_back: int = 0
    cases_resolved: int = 0
    cases_reopened: int = 0
    # shadow: resolved cases whose recommendation had an action, and how many matched
    with_action: int = 0
    action_matches: int = 0
    # The unassisted baseline: the workflow's cases resolved while it was in shadow.
    baseline_resolved: int = 0
    baseline_reopened: int = 0
    audit_gaps: int | None = None  # None: not looked at
    # Rates a source computed already (the metrics view's, from the same sums), by name.
    given: Mapping[str, float | None] = field(default_factory=dict)

    def rate(self, name: str, numerator: int, denominator: int) -> float | None:
        if name in self.given:
            return self.given[name]
        return _rate(numerator, denominator)

    @classmethod
    def of_rows(
        cls, metrics: Mapping[str, Any] | None, alignment: Mapping[str, Any] | None
    ) -> Evidence:
        """From a `metrics` row and a `shadow_alignment` row (re-aggregated sums)."""
        m, a = metrics or {}, alignment or {}
        names = (
            "decided",
            "denied",
            "reviewed",
            "accepted",
            "overridden",
            "executions",
            "executions_failed",
            "executions_rolled_back",
            "cases_resolved",
            "cases_reopened",
        )
        counts = {n: int(m.get(n) or 0) for n in names}
        rates = ("acceptance_rate", "override_rate", "error_rate", "rollback_rate")
        given = {r: m[r] for r in rates if r in m}
        if "action_match_rate" in a:
            given["action_match_rate"] = a["action_match_rate"]
        return cls(
            **counts,
            with_action=int(a.get("with_action") or 0),
            action_matches=int(a.get("action_matches") or 0),
            given=given,
        )


@dataclass(frozen=True, slots=True)
class Readiness:
    workflow: str
    phase: str
    next_phase: str | None
    sample: int
    min_sample: int
    checks: list[Check]
    ready: bool
    verdict: str


def readiness(workflow: Workflow, ev: Evidence) -> Readiness:
    """`workflow`'s evidence in its current phase against its promotion criteria.

    assisted and bounded: acceptance and override over reviewed recommendations; shadow
    (nobody reviews): acceptance is how often the recommended action was what operators
    did. Ready when the sample is large enough, acceptance passed and no check failed (a
    check without data neither passes nor fails).
    """
    p = workflow.promotion
    shadow = workflow.phase == "shadow"
    if shadow:
        sample = ev.with_action
        checks = [
            check(
                "acceptance_rate",
                ">=",
                p.min_acceptance_rate,
                ev.rate("action_match_rate", ev.action_matches, ev.with_action),
                "action match rate: hits (recommended action among actions_taken) / "
                "resolved cases with a recommended action",
            )
        ]
    else:
        sample = ev.reviewed
        checks = [
            check(
                "acceptance_rate",
                ">=",
                p.min_acceptance_rate,
                ev.rate("acceptance_rate", ev.accepted, ev.reviewed),
                "accepted / reviewed",
            ),
            check(
                "override_rate",
                "<=",
                p.max_override_rate,
                ev.rate("override_rate", ev.overridden, ev.reviewed),
                "overridden / reviewed",
            ),
        ]
    checks.append(
        check(
            "error_rate",
            "<=",
            p.max_error_rate,
            ev.rate("error_rate", ev.executions_failed, ev.executions),
            "failed or rolled back / executions",
        )
    )
    # Shadow runs nothing and is itself the unassisted baseline: these do not apply there.
    if not shadow:
        checks.append(
            check(
                "rollback_rate",
                "<=",
                p.max_rollback_rate,
                ev.rate("rollback_rate", ev.executions_rolled_back, ev.executions),
                "rolled back / executions",
            )
        )
        if p.reopen_not_above_baseline:
            baseline = _rate(ev.baseline_reopened, ev.baseline_resolved)
            checks.append(
                check(
                    "reopen_rate",
                    "<=",
                    baseline if baseline is not None else 0.0,
                    _rate(ev.cases_reopened, ev.cases_resolved) if baseline is not None else None,
                    "reopened / resolved, against the workflow's cases resolved in shadow",
                )
            )
    if p.min_decided:
        checks.append(
            check("decided", ">=", p.min_decided, ev.decided, "guard decisions in the window")
        )
    if p.audit_complete and ev.audit_gaps is not None:
        checks.append(
            check(
                "audit_gaps", "<=", 0, ev.audit_gaps, "recommendations missing an audited outcome"
            )
        )
    failed = [c.name for c in checks if c.passed is False]
    enough = sample >= p.min_sample
    ready = enough and not failed and checks[0].passed is True
    nxt = NEXT_PHASE[workflow.phase]
    if ready:
        verdict = f"ready for {nxt}" if nxt else "meets its criteria"
    elif failed:
        names = ", ".join(name.replace("_", " ") for name in failed)
        verdict = f"not ready: {names} outside the threshold"
    elif not enough:
        verdict = f"not ready: sample {sample} of {p.min_sample} needed"
    else:
        verdict = "not ready: no acceptance data yet"
    return Readiness(
        workflow=workflow.name,
        phase=workflow.phase,
        next_phase=nxt,
        sample=sample,
        min_sample=p.min_sample,
        checks=checks,
        ready=ready,
        verdict=verdict,
    )


@dataclass(frozen=True, slots=True)
class Recent:
    """The workflow's last executions and decisions in its current phase (at most
    `demotion.last_executions` / `last_decisions` of each)."""

    executions: int = 0
    failed: int = 0  # failed or rolled back
    rolled_back: int = 0
    decisions: int = 0
    denied: int = 0


def demotion_checks(workflow: Workflow, recent: Recent) -> list[Check]:
    """Every demotion trigger of `workflow` with its value; a failed check fires."""
    d = workflow.demotion
    last_x = f"last {recent.executions} executions (up to {d.last_executions})"
    last_d = f"last {recent.decisions} decisions (up to {d.last_decisions})"
    enough_x = recent.executions >= d.min_sample
    enough_d = recent.decisions >= d.min_sample
    wanted = (
        ("failure_rate", d.max_failure_rate, recent.failed, recent.executions, enough_x, last_x),
        (
            "rollback_rate",
            d.max_rollback_rate,
            recent.rolled_back,
            recent.executions,
            enough_x,
            last_x,
        ),
        ("denial_rate", d.max_denial_rate, recent.denied, recent.decisions, enough_d, last_d),
    )
    return [
        check(name, "<=", limit, _rate(n, total) if enough else None, basis)
        for name, limit, n, total, enough, basis in wanted
        if limit is not None
    ]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rollout processor does about one workflow now."""

    action: Literal["demote", "propose", "hold"]
    to_phase: str | None = None
    checks: list[Check] = field(default_factory=list)
    readiness: Readiness | None = None
    why: str = ""


def evaluate(workflow: Workflow, evidence: Evidence, recent: Recent, proposed: bool) -> Verdict:
    """Demote when a trigger fires (never below shadow), else propose the next phase when
    ready and not yet proposed under this policy version, else hold."""
    triggers = demotion_checks(workflow, recent)
    fired = [c for c in triggers if c.passed is False]
    lower = PREVIOUS_PHASE[workflow.phase]
    if fired and lower is not None:
        names = ", ".join(f"{c.name} {c.value:.2f} > {c.threshold:g}" for c in fired if c.value)
        return Verdict("demote", lower, triggers, why=f"demotion trigger fired: {names}")
    ready = readiness(workflow, evidence)
    if ready.ready and ready.next_phase is not None:
        if proposed:
            return Verdict("hold", readiness=ready, why="already proposed under this version")
        return Verdict("propose", ready.next_phase, ready.checks, ready, ready.verdict)
    return Verdict("hold", readiness=ready, why=ready.verdict)


def phase_versions(history: Sequence[LoadedPolicy], workflow: str) -> list[str]:
    """The versions, newest first, since `workflow` entered the phase it has in the newest
    (`history` in publication order): the evidence of its current phase was decided under
    these. Empty when the newest policy has no such workflow."""
    if not history or workflow not in history[-1].policy.workflows:
        return []
    phase = history[-1].policy.workflows[workflow].phase
    out: list[str] = []
    for loaded in reversed(history):
        wf = loaded.policy.workflows.get(workflow)
        if wf is None or wf.phase != phase:
            break
        out.append(loaded.version)
    return out


def next_version(current: str, taken: Mapping[str, Any] | set[str]) -> str:
    """The version a rollout change publishes: `<base>+r<n>`, the first n not taken."""
    base = current.split("+r", 1)[0]
    n = 1
    while f"{base}+r{n}" in taken:
        n += 1
    return f"{base}+r{n}"


class RephaseError(ValueError):
    """The changed document is not the same policy with one phase changed."""


def rephased(
    loaded: LoadedPolicy, workflow: str, phase: str, version: str, note: str
) -> LoadedPolicy:
    """`loaded` with `workflow` in `phase` under `version`, and nothing else changed.

    The document is rewritten from its data (comments are not kept; `note` heads it), then
    loaded back and compared with the original, so a change is never more than it says.
    """
    data = yaml.safe_load(loaded.text)
    data["version"] = version
    data["workflows"][workflow]["phase"] = phase
    header = "".join(f"# {line}\n" for line in note.splitlines())
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    new = load_policy_text(text)
    expected = {f"version: {loaded.version} -> {version}"}
    if loaded.policy.workflows[workflow].phase != phase:
        expected.add(
            f"workflows.{workflow}.phase: {loaded.policy.workflows[workflow].phase} -> {phase}"
        )
    changes = set(diff_policies(loaded, new))
    if changes != expected:
        raise RephaseError(f"rewriting the policy changed more than the phase: {sorted(changes)}")
    return new
