"""Workflows: which cases a slice of work covers, its phase, and its action envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from policy.catalog import Frozen, Name

Phase = Literal["shadow", "assisted", "bounded"]
Mode = Literal["suggest", "approve", "auto", "prohibited"]

# Case fields a workflow may match on: the case's routing fields, as upstream last set
# them. Never the model's output: a `category` rule would let the case's text (which the
# model reads) choose the workflow, and with it the guardrails that apply.
MATCH_FIELDS = ("channel", "queue", "team", "issue_class", "priority", "source")
# Fields a workflow once could match on, and why no longer.
REFUSED_MATCH_FIELDS = {
    "category": "it is the model's prediction from the case text, so the text would choose "
    "the workflow and its guardrails; match on the case's routing fields instead "
    "(issue_class is upstream's own class)",
}


def _one_or_many(value: Any) -> Any:
    # `queue: identity` reads better than `queue: [identity]`; accept both.
    return (value,) if isinstance(value, str) else value


OneOrMany = Annotated[tuple[str, ...], BeforeValidator(_one_or_many)]


class ParamBound(Frozen):
    """A workflow's narrowing of a catalog parameter (never a widening)."""

    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ParamBound:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        if self.values is not None and not self.values:
            raise ValueError("values, when given, must not be empty")
        return self


class ActionRule(Frozen):
    """How a workflow treats one catalog action.

    mode: `suggest` (shown, an operator acts by hand, never executed by casegate),
    `approve` (executed once approved), `auto` (executed without review in the bounded
    phase when inside bounds and blast radius), `prohibited` (never).
    on_out_of_bounds: outside the workflow's bounds, `deny` or send for `approve`-al.
    """

    mode: Mode
    bounds: dict[Name, ParamBound] = Field(default_factory=dict)
    on_out_of_bounds: Literal["deny", "approve"] = "deny"


class BlastRadius(Frozen):
    """At most `max_auto_runs` automatic runs of the workflow per sliding `window_s`."""

    max_auto_runs: int = Field(ge=0)
    window_s: int = Field(gt=0)


# Calibrated probability below which the baseline abstains: it still names its most
# probable category (routing needs one) but recommends no action.
DEFAULT_MIN_CONFIDENCE = 0.5


class BaselineRecommender(Frozen):
    """The offline recommender learned from resolved-case history; no network.

    min_confidence: below this calibrated probability of its category (the
    recommendation's confidence) it abstains: no action, and the rationale says so.
    """

    kind: Literal["baseline"] = "baseline"
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0.0, le=1.0)


class LlmRecommender(Frozen):
    """An LLM (through litellm) with a versioned prompt; falls back to the baseline.

    min_confidence: the abstention threshold of the baseline answer (the fallback and
    the evidence offered to the prompt), as in BaselineRecommender.
    """

    kind: Literal["llm"] = "llm"
    model: str = Field(min_length=1)
    prompt_version: str = Field(min_length=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(default=20.0, gt=0, le=120)
    max_retries: int = Field(default=1, ge=0, le=5)
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0.0, le=1.0)


Recommender = Annotated[BaselineRecommender | LlmRecommender, Field(discriminator="kind")]


class Promotion(Frozen):
    """Evidence a workflow must show in its current phase before it is proposed for the next
    one, and who approves the proposal (policy.rollout evaluates it).

    The evidence counts only what was decided since the workflow entered its current phase
    and inside the last `window_s`: after a demotion a workflow earns its promotion again.
    """

    min_acceptance_rate: float = Field(default=0.8, ge=0, le=1)
    max_override_rate: float = Field(default=0.1, ge=0, le=1)
    max_error_rate: float = Field(default=0.02, ge=0, le=1)
    max_rollback_rate: float = Field(default=0.02, ge=0, le=1)
    min_sample: int = Field(default=100, ge=1)
    # Guard decisions of the workflow's cases inside the window (0: no such minimum).
    min_decided: int = Field(default=0, ge=0)
    window_s: int = Field(default=30 * 86_400, gt=0)
    # Re-open rate not above the one of the workflow's cases handled unaided (shadow).
    reopen_not_above_baseline: bool = True
    # No recommendation of the workflow may lack an outcome the audit must hold.
    audit_complete: bool = True
    # Two-person rule: distinct people of these roles approve the proposal.
    approvals: int = Field(default=2, ge=2, le=10)
    approver_roles: tuple[str, ...] = ("supervisor",)

    @model_validator(mode="after")
    def _some_approver(self) -> Promotion:
        if not self.approver_roles:
            raise ValueError("approver_roles must name at least one role")
        return self


class Demotion(Frozen):
    """Triggers that demote a workflow at once (bounded -> assisted, assisted -> shadow),
    each a rate over the last N executions or decisions of its current phase; None turns a
    trigger off. Nothing fires on fewer than `min_sample` of them."""

    last_executions: int = Field(default=20, ge=1)
    max_failure_rate: float | None = Field(default=0.25, ge=0, le=1)
    max_rollback_rate: float | None = Field(default=0.2, ge=0, le=1)
    last_decisions: int = Field(default=50, ge=1)
    # Off unless set: a denial is the guard doing its job, and how many are normal depends
    # on the workflow's bounds.
    max_denial_rate: float | None = Field(default=None, ge=0, le=1)
    min_sample: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _sample_fits(self) -> Demotion:
        if self.min_sample > min(self.last_executions, self.last_decisions):
            raise ValueError(
                f"min_sample {self.min_sample} is above last_executions/last_decisions: "
                "no trigger could ever fire"
            )
        return self


class Workflow(Frozen):
    """A narrow slice of work, in exactly one phase, with its own action envelope.

    `match` maps a case field (see MATCH_FIELDS) to the values it may take; every entry
    must hold, and a missing (null) field never matches. An empty match takes every case.
    """

    name: Name  # filled from its key in the document
    description: str = ""
    match: dict[str, OneOrMany] = Field(default_factory=dict)
    phase: Phase
    actions: dict[Name, ActionRule] = Field(default_factory=dict)
    blast_radius: BlastRadius | None = None
    approval_ttl_s: int = Field(default=86_400, gt=0)
    recommender: Recommender = BaselineRecommender()
    promotion: Promotion = Promotion()
    demotion: Demotion = Demotion()

    @model_validator(mode="after")
    def _hysteresis(self) -> Workflow:
        # A demotion threshold at or below the promotion one would let a workflow qualify
        # and be demoted on the same evidence: promote, demote, promote...
        pairs = (
            ("max_failure_rate", self.demotion.max_failure_rate, "max_error_rate"),
            ("max_rollback_rate", self.demotion.max_rollback_rate, "max_rollback_rate"),
        )
        for name, trigger, gate in pairs:
            floor = getattr(self.promotion, gate)
            if trigger is not None and trigger <= floor:
                raise ValueError(
                    f"demotion.{name} {trigger:g} must be above promotion.{gate} {floor:g}, "
                    "or a workflow that just qualified could be demoted on the same evidence"
                )
        return self

    @model_validator(mode="after")
    def _known_match_fields(self) -> Workflow:
        for field_name, why in REFUSED_MATCH_FIELDS.items():
            if field_name in self.match:
                raise ValueError(f"match on {field_name!r} is refused: {why}")
        unknown = sorted(set(self.match) - set(MATCH_FIELDS))
        if unknown:
            raise ValueError(
                f"match on unknown case field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(MATCH_FIELDS)}"
            )
        return self

    def matches(self, case_fields: Mapping[str, str | None]) -> bool:
        """Does a case with these routing fields fall in the workflow?"""
        for field_name, allowed in self.match.items():
            value = case_fields.get(field_name)
            if value is None or value not in allowed:
                return False
        return True
