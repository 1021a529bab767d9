"""The one check of an action against a workflow's envelope, shared by guard and approve.

It answers: does the action exist, may this workflow use it, and are its parameters
well-formed and inside the catalog's and the workflow's bounds? It does not look at
phase, mode (other than `prohibited`) or rate: those are the guard's decision.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from policy.loader import LoadedPolicy
from policy.model import Action, ParamBound, ParamSpec, Policy, Workflow
from schemas.events import ActionSpec, Scalar

# Reason codes, also used verbatim in events and metrics.
UNKNOWN_ACTION = "unknown_action"
ACTION_NOT_IN_WORKFLOW = "action_not_in_workflow"
ACTION_PROHIBITED = "action_prohibited"
PARAM_INVALID = "param_invalid"
PARAM_OUT_OF_BOUNDS = "param_out_of_bounds"


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason an action does not fit the envelope.

    `negotiable` is true only for a breach of the workflow's own bounds, which the
    workflow's `on_out_of_bounds: approve` may send to a human instead of denying.
    Catalog limits, types and prohibitions are never negotiable.
    """

    code: str
    detail: str
    negotiable: bool = False


def as_policy(policy: Policy | LoadedPolicy) -> Policy:
    return policy.policy if isinstance(policy, LoadedPolicy) else policy


def action_findings(
    action: ActionSpec, workflow: Workflow, policy: Policy | LoadedPolicy
) -> list[Finding]:
    """Every way `action` breaks the catalog or `workflow`'s rules; empty when it fits."""
    entry = as_policy(policy).action(action.name)
    if entry is None:
        return [Finding(UNKNOWN_ACTION, f"{action.name!r} is not in the action catalog")]
    rule = workflow.actions.get(action.name)
    if rule is None:
        return [
            Finding(
                ACTION_NOT_IN_WORKFLOW,
                f"{action.name} is not an action of workflow {workflow.name}",
            )
        ]
    if rule.mode == "prohibited":
        return [
            Finding(ACTION_PROHIBITED, f"{action.name} is prohibited in workflow {workflow.name}")
        ]
    return param_findings(action, entry, rule.bounds)


def check_action(
    action: ActionSpec, workflow: Workflow, policy: Policy | LoadedPolicy
) -> list[str]:
    """The reason codes of `action_findings`, each once, in order; empty when it fits."""
    return list(dict.fromkeys(f.code for f in action_findings(action, workflow, policy)))


def is_denied(findings: list[Finding], on_out_of_bounds: str) -> bool:
    """Do these findings deny the action outright (rather than send it to a human)?

    Only a breach of the workflow's own bounds may go to a human, and only when the
    workflow says `on_out_of_bounds: approve`; anything else found is a denial.
    """
    return any(not f.negotiable or on_out_of_bounds == "deny" for f in findings)


def param_findings(
    action: ActionSpec, entry: Action, bounds: Mapping[str, ParamBound]
) -> list[Finding]:
    """Unknown, missing or malformed parameters, and values outside the catalog's or
    `bounds`' limits (pass no bounds for a catalog-only check)."""
    findings = [
        Finding(PARAM_INVALID, f"{entry.name} has no parameter {name!r}")
        for name in action.params
        if name not in entry.params
    ]
    for name, spec in entry.params.items():
        value = action.params.get(name)
        if value is None:
            if spec.required:
                findings.append(Finding(PARAM_INVALID, f"{name} is required"))
            continue
        findings += _value_findings(name, value, spec, bounds.get(name))
    return findings


def _value_findings(
    name: str, value: Scalar, spec: ParamSpec, bound: ParamBound | None
) -> list[Finding]:
    problem = _format_problem(value, spec)
    if problem:
        return [Finding(PARAM_INVALID, f"{name}: {problem}")]
    findings = []
    if isinstance(value, int | float):  # numeric, bool excluded by _format_problem
        if spec.min is not None and value < spec.min:
            findings.append(
                Finding(
                    PARAM_OUT_OF_BOUNDS, f"{name} {value:g} is below the catalog min {spec.min:g}"
                )
            )
        if spec.max is not None and value > spec.max:
            findings.append(
                Finding(
                    PARAM_OUT_OF_BOUNDS, f"{name} {value:g} is above the catalog max {spec.max:g}"
                )
            )
    if bound is None or findings:
        return findings
    if isinstance(value, int | float) and bound.min is not None and value < bound.min:
        findings.append(
            Finding(
                PARAM_OUT_OF_BOUNDS,
                f"{name} {value:g} is below the workflow min {bound.min:g}",
                negotiable=True,
            )
        )
    if isinstance(value, int | float) and bound.max is not None and value > bound.max:
        findings.append(
            Finding(
                PARAM_OUT_OF_BOUNDS,
                f"{name} {value:g} is above the workflow max {bound.max:g}",
                negotiable=True,
            )
        )
    if isinstance(value, str) and bound.values is not None and value not in bound.values:
        findings.append(
            Finding(
                PARAM_OUT_OF_BOUNDS,
                f"{name} {value!r} is not among the workflow's {', '.join(bound.values)}",
                negotiable=True,
            )
        )
    return findings


def _format_problem(value: Scalar, spec: ParamSpec) -> str | None:
    """Why `value` is not a well-formed value of `spec`'s type, or None."""
    kind = spec.type
    # bool is a subclass of int in Python; a flag is never a number here.
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expected boolean, got {value!r}"
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected {kind}, got {value!r}"
        if kind == "integer" and not isinstance(value, int):
            return f"expected integer, got {value!r}"
        return None if math.isfinite(value) else f"expected a finite number, got {value!r}"
    if not isinstance(value, str):
        return f"expected {kind}, got {value!r}"
    if kind == "enum" and value not in (spec.values or ()):
        return f"{value!r} is not one of {', '.join(spec.values or ())}"
    if spec.max_length is not None and len(value) > spec.max_length:
        return f"longer than {spec.max_length} characters"
    if spec.pattern is not None and re.fullmatch(spec.pattern, value) is None:
        return f"{value!r} does not match {spec.pattern!r}"
    return None
