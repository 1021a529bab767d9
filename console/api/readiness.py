"""Rollout readiness: a workflow's metrics in its current phase against its promotion
criteria (pure; the rows come from the metrics and shadow_alignment views).

- assisted and bounded: acceptance and override rates over `reviewed` recommendations,
  error rate over executions; the sample is `reviewed`.
- shadow: nobody reviews, so acceptance is shadow_alignment's action match rate: hits
  (the recommended action among actions_taken, the one definition of a hit) over the
  resolved cases whose recommendation had an action.
A check without data is neither passed nor failed; a workflow is ready when its sample is
large enough, its acceptance check passed, and no check failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console.api.models import Check, Readiness
from policy.model import Workflow

NEXT_PHASE = {"shadow": "assisted", "assisted": "bounded", "bounded": None}


def _check(name: str, comparison: str, threshold: float, value: Any, basis: str) -> Check:
    number = None if value is None else float(value)
    passed = None
    if number is not None:
        passed = number >= threshold if comparison == ">=" else number <= threshold
    return Check(
        name=name,
        comparison=">=" if comparison == ">=" else "<=",
        threshold=threshold,
        value=number,
        passed=passed,
        basis=basis,
    )


def readiness(
    workflow: Workflow,
    metrics: Mapping[str, Any] | None,
    alignment: Mapping[str, Any] | None,
) -> Readiness:
    """Readiness of `workflow` from its metrics row and alignment row in its current phase."""
    p = workflow.promotion
    m = metrics or {}
    if workflow.phase == "shadow":
        a = alignment or {}
        sample = int(a.get("with_action") or 0)
        checks = [
            _check(
                "acceptance_rate",
                ">=",
                p.min_acceptance_rate,
                a.get("action_match_rate"),
                "action match rate: hits (recommended action among actions_taken) / "
                "resolved cases with a recommended action",
            ),
        ]
    else:
        sample = int(m.get("reviewed") or 0)
        checks = [
            _check(
                "acceptance_rate",
                ">=",
                p.min_acceptance_rate,
                m.get("acceptance_rate"),
                "accepted / reviewed",
            ),
            _check(
                "override_rate",
                "<=",
                p.max_override_rate,
                m.get("override_rate"),
                "overridden / reviewed",
            ),
        ]
    checks.append(
        _check(
            "error_rate",
            "<=",
            p.max_error_rate,
            m.get("error_rate"),
            "failed or rolled back / executions",
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
