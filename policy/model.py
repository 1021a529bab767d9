"""The policy document: roles, action catalog, workflows, model visibility and audit.

One `Policy` answers the five guardrail questions of architecture §1. Field-level rules live
with each model (`policy.catalog`, `policy.workflow`, `policy.visibility`); the rules
that tie sections together (a workflow names a catalog action, a rollback names an
action, approvals name roles, workflow bounds stay inside catalog bounds) are checked
here, on the whole document, and every problem is reported with its dotted path.

Semantics choice: a workflow may mark an action `auto` only when the catalog action
needs no approval (`approvals.count: 0`). The catalog's approval count is the action's
own sensitivity ("second set of eyes"); no workflow can bypass it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from policy.catalog import (
    Action,
    ActionName,
    AdapterSpec,
    Approvals,
    Effects,
    Frozen,
    Name,
    ParamSpec,
    ParamType,
    Risk,
    Role,
    RollbackSpec,
)
from policy.routing import MATCH_FIELDS
from policy.visibility import (
    BUILTIN_PATTERNS,
    CASE_FIELDS,
    Audit,
    ModelVisibility,
    Redaction,
)
from policy.workflow import (
    ActionRule,
    BaselineRecommender,
    BlastRadius,
    Demotion,
    LlmRecommender,
    Mode,
    ParamBound,
    Phase,
    Promotion,
    Recommender,
    Workflow,
)

__all__ = [
    "BUILTIN_PATTERNS",
    "CASE_FIELDS",
    "MATCH_FIELDS",
    "Action",
    "ActionName",
    "ActionRule",
    "AdapterSpec",
    "Approvals",
    "Audit",
    "BaselineRecommender",
    "BlastRadius",
    "Demotion",
    "Effects",
    "LlmRecommender",
    "Mode",
    "ModelVisibility",
    "ParamBound",
    "ParamSpec",
    "ParamType",
    "Phase",
    "Policy",
    "PolicyConsistencyError",
    "Promotion",
    "Recommender",
    "Redaction",
    "Risk",
    "Role",
    "RollbackSpec",
    "Workflow",
]

_NAMED_SECTIONS = ("roles", "catalog", "workflows")


class PolicyConsistencyError(ValueError):
    """Cross-section problems, each as (dotted path in the document, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


class Policy(Frozen):
    """A whole policy document. Sections keep document order (workflow matching uses it)."""

    version: str = Field(min_length=1)
    """Published under this version; each version is published once."""
    description: str = ""
    """Free text for people; not used by any decision."""
    roles: dict[Name, Role]
    """Operator roles by name, with the permissions each holds."""
    catalog: dict[ActionName, Action]
    """Every action the AI may suggest, by name (guardrail question 1)."""
    workflows: dict[Name, Workflow]
    """Slices of work in document order; a case belongs to the first whose match it satisfies."""
    model_visibility: ModelVisibility
    """Which case fields a model may read, and redaction of free text (question 4)."""
    audit: Audit
    """Outcomes the audit log must prove it holds (question 5)."""

    @model_validator(mode="before")
    @classmethod
    def _name_from_key(cls, data: Any) -> Any:
        # Entries are written as `name: {...}`; copy the key in so that a Workflow or an
        # Action handed around alone still knows its name.
        if not isinstance(data, dict):
            return data
        named = dict(data)
        for section in _NAMED_SECTIONS:
            entries = named.get(section)
            if isinstance(entries, dict):
                named[section] = {
                    key: {"name": key, **entry} if isinstance(entry, dict) else entry
                    for key, entry in entries.items()
                }
        return named

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        problems = self._name_problems() + self._catalog_problems() + self._workflow_problems()
        if problems:
            raise PolicyConsistencyError(problems)
        return self

    # --- helpers used by guard, approve, execute and the recommender -------------------

    def action(self, name: str) -> Action | None:
        """The catalog action called `name`, or None."""
        return self.catalog.get(name)

    def workflow_for(self, case_fields: Mapping[str, str | None]) -> Workflow | None:
        """The first workflow, in document order, whose match rules the case's routing
        fields satisfy (never the model's output: see policy.routing.MATCH_FIELDS)."""
        return next((wf for wf in self.workflows.values() if wf.matches(case_fields)), None)

    def roles_with(self, permission: str) -> tuple[str, ...]:
        """Roles holding `permission`, in document order."""
        return tuple(r.name for r in self.roles.values() if permission in r.permissions)

    def approver_roles(self, action: Action) -> tuple[str, ...]:
        """Who may approve `action`: its approval roles, else every role with its permission."""
        return action.approvals.roles or self.roles_with(action.permission)

    # --- cross-section checks ---------------------------------------------------------

    def _name_problems(self) -> list[tuple[str, str]]:
        sections: dict[str, Mapping[str, Role | Action | Workflow]] = {
            "roles": self.roles,
            "catalog": self.catalog,
            "workflows": self.workflows,
        }
        return [
            (f"{section}.{key}.name", f"must equal its key {key!r}, got {entry.name!r}")
            for section, entries in sections.items()
            for key, entry in entries.items()
            if entry.name != key
        ]

    def _catalog_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for name, action in self.catalog.items():
            at = f"catalog.{name}"
            holders = self.roles_with(action.permission)
            if not holders:
                problems.append(
                    (f"{at}.permission", f"no role holds permission {action.permission!r}")
                )
            for role in action.approvals.roles:
                if role not in self.roles:
                    problems.append(
                        (f"{at}.approvals.roles", f"unknown role {role!r}; {_known(self.roles)}")
                    )
                elif role not in holders:
                    problems.append(
                        (
                            f"{at}.approvals.roles",
                            f"role {role!r} lacks permission {action.permission!r}, "
                            "so it cannot approve this action",
                        )
                    )
            if action.rollback is not None:
                problems += self._rollback_problems(at, action, action.rollback)
        return problems

    def _rollback_problems(
        self, at: str, action: Action, rollback: RollbackSpec
    ) -> list[tuple[str, str]]:
        target = self.catalog.get(rollback.action)
        if target is None:
            return [
                (
                    f"{at}.rollback.action",
                    f"unknown catalog action {rollback.action!r}; {_known(self.catalog)}",
                )
            ]
        problems = []
        for param, source in rollback.params.items():
            if param not in target.params:
                problems.append(
                    (
                        f"{at}.rollback.params.{param}",
                        f"{rollback.action} has no parameter {param!r}",
                    )
                )
            kind, _, field_name = source.partition(".")
            if kind == "params" and field_name not in action.params:
                problems.append(
                    (
                        f"{at}.rollback.params.{param}",
                        f"{action.name} has no parameter {field_name!r}",
                    )
                )
        return problems

    def _workflow_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for wf_name, wf in self.workflows.items():
            for action_name, rule in wf.actions.items():
                at = f"workflows.{wf_name}.actions.{action_name}"
                action = self.catalog.get(action_name)
                if action is None:
                    problems.append(
                        (at, f"unknown catalog action {action_name!r}; {_known(self.catalog)}")
                    )
                    continue
                if rule.mode == "auto" and action.approvals.count > 0:
                    problems.append(
                        (
                            f"{at}.mode",
                            f"auto needs a catalog action with approvals.count 0; "
                            f"{action_name} requires {action.approvals.count}",
                        )
                    )
                for param, bound in rule.bounds.items():
                    problems += _bound_problems(f"{at}.bounds.{param}", action, param, bound)
            if "approver_roles" in wf.promotion.model_fields_set:
                unknown = [r for r in wf.promotion.approver_roles if r not in self.roles]
                if unknown:
                    problems.append(
                        (
                            f"workflows.{wf_name}.promotion.approver_roles",
                            f"unknown role(s) {', '.join(unknown)}",
                        )
                    )
            if wf.blast_radius is None and any(r.mode == "auto" for r in wf.actions.values()):
                problems.append(
                    (f"workflows.{wf_name}.blast_radius", "required when an action is auto")
                )
        return problems


def _known(entries: Mapping[str, object]) -> str:
    """The names a reference may take, for an error message."""
    return f"known: {', '.join(entries) or 'none'}"


def _bound_problems(
    at: str, action: Action, param: str, bound: ParamBound
) -> list[tuple[str, str]]:
    """A workflow bound may only narrow the catalog's limits of that parameter."""
    spec = action.params.get(param)
    if spec is None:
        return [(at, f"{action.name} has no parameter {param!r}")]
    problems = []
    numeric = spec.type in ("integer", "number")
    if (bound.min is not None or bound.max is not None) and not numeric:
        problems.append((at, f"min/max bound on a {spec.type} parameter"))
    if bound.values is not None and spec.type not in ("enum", "string"):
        problems.append((at, f"values bound on a {spec.type} parameter"))
    if bound.min is not None and spec.min is not None and bound.min < spec.min:
        problems.append((f"{at}.min", f"{bound.min:g} is below the catalog min {spec.min:g}"))
    if bound.max is not None and spec.max is not None and bound.max > spec.max:
        problems.append((f"{at}.max", f"{bound.max:g} is above the catalog max {spec.max:g}"))
    if bound.values is not None and spec.values is not None:
        extra = [v for v in bound.values if v not in spec.values]
        if extra:
            problems.append(
                (
                    f"{at}.values",
                    f"{', '.join(extra)} not among the catalog values {', '.join(spec.values)}",
                )
            )
    return problems
