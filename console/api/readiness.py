"""Rollout readiness for the API: the pure evaluator (policy.rollout_rules) over a workflow's
all-time metrics and shadow_alignment rows in its current phase, as API models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from console.api.models import Check, Readiness
from policy import rollout_rules
from policy.model import Workflow

NEXT_PHASE = rollout_rules.NEXT_PHASE


def as_model(result: rollout_rules.Readiness) -> Readiness:
    return Readiness(
        **{k: v for k, v in asdict(result).items() if k != "checks"},
        checks=[Check(**asdict(c)) for c in result.checks],
    )


def readiness(
    workflow: Workflow,
    metrics: Mapping[str, Any] | None,
    alignment: Mapping[str, Any] | None,
) -> Readiness:
    """Readiness of `workflow` from its metrics row and alignment row in its current phase."""
    return as_model(
        rollout_rules.readiness(workflow, rollout_rules.Evidence.of_rows(metrics, alignment))
    )
