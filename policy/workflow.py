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
    """Thresholds a workflow's metrics must meet before promotion to the next phase."""

    min_acceptance_rate: float = Field(default=0.8, ge=0, le=1)
    max_override_rate: float = Field(default=0.1, ge=0, le=1)
    max_error_rate: float = Field(default=0.02, ge=0, le=1)
    min_sample: int = Field(default=100, ge=1)


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
