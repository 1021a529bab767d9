"""Rollout readiness for the API: the pure evaluator (policy.rollout) over a workflow's
all-time metrics and shadow_alignment rows in its current phase, as API models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from console.api.models import Check, Readiness
from policy import rollout
from policy.model import Workflow

NEXT_PHASE = rollout.NEXT_PHASE


def as_model(result: rollout.Readiness) -> Readiness:
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
    return as_model(rollout.readiness(workflow, rollout.Evidence.of_rows(metrics, alignment)))
