"""The action catalog and roles: what exists, what it touches, who may approve or run it.

Each model checks only its own fields; references between sections (rollback action,
approval roles, workflow bounds) are checked once, on the whole document, in
`policy.model.Policy`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from policy.case_fields import binding_path_problem
from schemas.names import ACTION_NAME_MAX, ACTION_NAME_PATTERN

# Names of roles, workflows and parameters: they appear in events, URLs and metrics
# labels, so keep them to one safe alphabet.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
# Catalog action names follow upstream's own (`query:balance`, `crm.refund`): the rule
# CaseResolved.actions_taken is held to as well (schemas.names), so history is cataloged
# as it is.
ActionName = Annotated[
    str, StringConstraints(pattern=ACTION_NAME_PATTERN, max_length=ACTION_NAME_MAX)
]

ParamType = Literal["string", "integer", "number", "boolean", "enum"]
Risk = Literal["low", "medium", "high", "critical"]


class Frozen(BaseModel):
    """Base of every policy model: immutable, and unknown keys are errors (typos show)."""

    # Field docstrings are the fields' descriptions (docs/policy-reference.md).
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def compile_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid Python regex, or None when it compiles."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression {pattern!r}: {exc}"
    return None


class Role(Frozen):
    """An operator role and the permissions it holds."""

    name: Name  # filled from its key in the document
    """Filled from its key in the document."""
    description: str = ""
    """Free text for people."""
    permissions: tuple[str, ...] = ()
    """Permissions the role holds; an action names the one needed to approve or run it."""


class ParamSpec(Frozen):
    """One action parameter: its type and the hard limits no workflow can widen.

    `from_case` binds the parameter to a fact of the case, named by a dotted path:
    `attributes.<key>`, `customer.<key>` or a top-level field such as `queue` (never the
    free-text `subject`/`description`). casegate fills a bound parameter from the case
    itself after the recommender answers, converted to `type`, overriding whatever the
    model or the history vote proposed; so case text can never choose it. When the case
    lacks the value the parameter is left out. The guard then checks it against the
    catalog limits and workflow bounds like any other parameter.
    """

    type: ParamType
    """Value type of the parameter."""
    required: bool = True
    """Must the recommendation carry it?"""
    description: str = ""
    """Free text shown to operators."""
    min: float | None = None  # integer | number
    """Lowest value (integer and number parameters)."""
    max: float | None = None  # integer | number
    """Highest value (integer and number parameters)."""
    max_length: int | None = Field(default=None, gt=0)  # string
    """Longest value in characters (string parameters)."""
    pattern: str | None = None  # string, full match
    """Regular expression the whole value must match (string parameters)."""
    values: tuple[str, ...] | None = None  # enum
    """The allowed values (enum parameters; required there)."""
    from_case: str | None = None  # dotted case path; see the class docstring
    """Dotted case path the value is taken from, never from the model (see above)."""

    @field_validator("from_case")
    @classmethod
    def _case_path(cls, path: str | None) -> str | None:
        # A field validator (not the model one below) so the error's document path ends
        # in `.from_case`.
        if path is not None and (problem := binding_path_problem(path)):
            raise ValueError(problem)
        return path

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        numeric = self.type in ("integer", "number")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to integer or number parameters, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        if (self.max_length is not None or self.pattern is not None) and self.type != "string":
            raise ValueError(f"max_length/pattern apply to string parameters, not {self.type}")
        if self.pattern is not None and (problem := compile_error(self.pattern)):
            raise ValueError(problem)
        if self.type == "enum" and not self.values:
            raise ValueError("an enum parameter needs a non-empty list of values")
        if self.values is not None and self.type != "enum":
            raise ValueError(f"values apply to enum parameters, not {self.type}")
        return self


class Effects(Frozen):
    """What running the action changes; null means it does not touch that dimension.

    Shown to operators as "what happens if accepted".
    """

    customer_state: str | None = None
    """What changes for the customer."""
    assignment: str | None = None
    """Who holds the case afterwards."""
    entitlement: str | None = None
    """What the customer is entitled to afterwards."""
    workflow_status: str | None = None
    """The case's status afterwards."""


class Approvals(Frozen):
    """How many distinct operators, of which roles, must approve before the action runs."""

    count: int = Field(default=0, ge=0, le=5)
    """Distinct operators who must approve; 0: none (only then may a workflow make it auto)."""
    roles: tuple[Name, ...] = ()
    """Roles eligible to approve; empty: every role holding the action's permission."""

    @model_validator(mode="after")
    def _roles_when_counted(self) -> Approvals:
        if self.count > 0 and not self.roles:
            raise ValueError(f"{self.count} approval(s) required but no eligible roles listed")
        return self


class AdapterSpec(Frozen):
    """How the executor runs the action.

    `post_condition` names a field of the adapter's result that must be truthy for the
    run to count as a success; when it is not, a reversible action is rolled back.
    """

    kind: Literal["http", "log"]
    """`http` POSTs the call to `url`; `log` only logs it (demo)."""
    url: str | None = None
    """Where an http adapter POSTs (required for http, refused for log)."""
    post_condition: str | None = None
    """Field of the adapter's result that must be truthy for success."""

    @model_validator(mode="after")
    def _url_for_http(self) -> AdapterSpec:
        if self.kind == "http" and not self.url:
            raise ValueError("an http adapter needs a url")
        if self.kind == "log" and self.url:
            raise ValueError("a log adapter takes no url")
        return self


class RollbackSpec(Frozen):
    """The catalog action that undoes this one, and where its parameters come from.

    Each entry of `params` maps a parameter of the rollback action to a source:
    `params.<name>` (the original request's parameter) or `result.<field>` (a field of
    the original run's adapter result, e.g. the plan before a plan change).
    """

    action: ActionName
    """Catalog action that undoes this one."""
    params: dict[Name, Annotated[str, StringConstraints(pattern=r"^(params|result)\.\w+$")]] = (
        Field(default_factory=dict)
    )
    """Rollback parameter -> `params.<name>` or `result.<field>` of the original run."""


class Action(Frozen):
    """One catalog entry: everything needed to show, guard, approve and run an action."""

    name: ActionName  # filled from its key in the document
    """Filled from its key in the document."""
    description: str = ""
    """What it does, shown to operators."""
    params: dict[Name, ParamSpec] = Field(default_factory=dict)
    """Its parameters by name, with the hard limits no workflow can widen."""
    risk: Risk
    """Shown to operators beside the action."""
    effects: Effects = Effects()
    """What running it changes ("what happens if accepted")."""
    reversible: bool = False
    """Can it be undone? Then `rollback` is required."""
    rollback: RollbackSpec | None = None
    """How it is undone (required when reversible, refused otherwise)."""
    permission: str
    """Permission needed to approve or run it; some role must hold it."""
    timeout_s: float = Field(gt=0, le=300)
    """Longest the adapter may take before the run counts as failed (timed out)."""
    approvals: Approvals = Approvals()
    """How many approvers, of which roles, before it runs."""
    adapter: AdapterSpec
    """How the executor runs it."""

    @model_validator(mode="after")
    def _rollback_iff_reversible(self) -> Action:
        if self.reversible and self.rollback is None:
            raise ValueError("a reversible action needs a rollback")
        if not self.reversible and self.rollback is not None:
            raise ValueError("rollback given but reversible is false")
        return self
