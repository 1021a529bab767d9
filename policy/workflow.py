"""Workflows: which cases a slice of work covers, its phase, and its action envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from policy import routing
from policy.catalog import ActionName, Frozen, Name

Phase = Literal["shadow", "assisted", "bounded"]
Mode = Literal["suggest", "approve", "auto", "prohibited"]


def _one_or_many(value: Any) -> Any:
    # `queue: identity` reads better than `queue: [identity]`; accept both.
    return (value,) if isinstance(value, str) else value


OneOrMany = Annotated[tuple[str, ...], BeforeValidator(_one_or_many)]


class ParamBound(Frozen):
    """A workflow's narrowing of a catalog parameter (never a widening)."""

    min: float | None = None
    """Lowest value inside the envelope (not below the catalog's min)."""
    max: float | None = None
    """Highest value inside the envelope (not above the catalog's max)."""
    values: tuple[str, ...] | None = None
    """Allowed values inside the envelope (a subset of the catalog's)."""

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
    """How the workflow treats the action (see above)."""
    bounds: dict[Name, ParamBound] = Field(default_factory=dict)
    """Per parameter, the narrower envelope of this workflow."""
    on_out_of_bounds: Literal["deny", "approve"] = "deny"
    """Outside `bounds`: deny, or send for approval."""


class BlastRadius(Frozen):
    """At most `max_auto_runs` automatic runs of the workflow per sliding `window_s`."""

    max_auto_runs: int = Field(ge=0)
    """Most automatic runs per window, split evenly over the partitions (floor)."""
    window_s: int = Field(gt=0)
    """Length of the sliding window in seconds."""


# Calibrated probability below which the baseline abstains: it still names its most
# probable category (routing needs one) but recommends no action.
DEFAULT_MIN_CONFIDENCE = 0.5


class BaselineRecommender(Frozen):
    """The offline recommender learned from resolved-case history; no network.

    min_confidence: below this calibrated probability of its category (the
    recommendation's confidence) it abstains: no action, and the rationale says so.
    """

    kind: Literal["baseline"] = "baseline"
    """Selects this recommender."""
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0.0, le=1.0)
    """Abstention threshold: below it, no action is recommended."""


class LlmRecommender(Frozen):
    """An LLM (through litellm) with a versioned prompt; falls back to the baseline.

    min_confidence: the abstention threshold of the baseline answer (the fallback and
    the evidence offered to the prompt), as in BaselineRecommender.
    """

    kind: Literal["llm"] = "llm"
    """Selects this recommender."""
    model: str = Field(min_length=1)
    """litellm model name, e.g. `openai/gpt-4o-mini`."""
    prompt_version: str = Field(min_length=1)
    """Versioned prompt under processors/recommend/prompts/."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Sampling temperature."""
    timeout_s: float = Field(default=20.0, gt=0, le=120)
    """Longest one call may take before the baseline answers instead."""
    max_retries: int = Field(default=1, ge=0, le=5)
    """Retries of a failed or invalid answer before falling back."""
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0.0, le=1.0)
    """Abstention threshold of the baseline answer."""


Recommender = Annotated[BaselineRecommender | LlmRecommender, Field(discriminator="kind")]


class Promotion(Frozen):
    """Evidence a workflow must show in its current phase before it is proposed for the next
    one, and who approves the proposal (policy.rollout_rules evaluates it).

    The evidence counts only what was decided since the workflow entered its current phase
    and inside the last `window_s`: after a demotion a workflow earns its promotion again.
    """

    min_acceptance_rate: float = Field(default=0.8, ge=0, le=1)
    """Acceptance (shadow: action match) rate needed to be ready."""
    max_override_rate: float = Field(default=0.1, ge=0, le=1)
    """Highest manual override rate allowed."""
    max_error_rate: float = Field(default=0.02, ge=0, le=1)
    """Highest execution error rate (failed or rolled back / executions) allowed."""
    max_rollback_rate: float = Field(default=0.02, ge=0, le=1)
    """Highest rollback rate (rolled back / executions) allowed."""
    min_sample: int = Field(default=100, ge=1)
    """Reviewed (shadow: compared) recommendations needed before judging."""
    min_decided: int = Field(default=0, ge=0)
    """Guard decisions of the workflow's cases inside the window (0: no such minimum)."""
    window_s: int = Field(default=30 * 86_400, gt=0)
    """Seconds of evidence counted, back from now (and only since the current phase began)."""
    reopen_not_above_baseline: bool = True
    """Re-open rate must not be above the one of the workflow's cases handled unaided."""
    audit_complete: bool = True
    """No recommendation of the workflow may lack an outcome the audit must hold."""
    approvals: int = Field(default=2, ge=2, le=10)
    """Distinct people who must approve a proposal (two-person rule: at least 2)."""
    approver_roles: tuple[str, ...] = ("supervisor",)
    """Roles whose members may approve a proposal."""

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
    """Executions counted by the failure and rollback triggers (the latest ones)."""
    max_failure_rate: float | None = Field(default=0.25, ge=0, le=1)
    """Failed / executions above which the workflow is demoted; null: off."""
    max_rollback_rate: float | None = Field(default=0.2, ge=0, le=1)
    """Rolled back / executions above which the workflow is demoted; null: off."""
    last_decisions: int = Field(default=50, ge=1)
    """Guard decisions counted by the denial trigger (the latest ones)."""
    # Off unless set: a denial is the guard doing its job, and how many are normal depends
    # on the workflow's bounds.
    max_denial_rate: float | None = Field(default=None, ge=0, le=1)
    """Denied / decisions above which the workflow is demoted; null (default): off."""
    min_sample: int = Field(default=5, ge=1)
    """Fewest executions or decisions before any trigger may fire."""

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
    """Filled from its key in the document."""
    description: str = ""
    """Free text for people."""
    match: dict[str, OneOrMany] = Field(default_factory=dict)
    """Case field -> allowed value(s); fields: channel, queue, team, issue_class, priority, source.

    """
    phase: Phase
    """What the AI output does: recorded only, shown for approval, or run inside the envelope."""
    actions: dict[ActionName, ActionRule] = Field(default_factory=dict)
    """The catalog actions this workflow may recommend, each with its rule."""
    blast_radius: BlastRadius | None = None
    """Limit of automatic runs; required when an action is auto."""
    approval_ttl_s: int = Field(default=86_400, gt=0)
    """How long an approval item waits before it expires."""
    recommender: Recommender = BaselineRecommender()
    """Which recommender answers for this workflow's cases."""
    promotion: Promotion = Promotion()
    """Evidence and approvers needed for promotion to the next phase."""
    demotion: Demotion = Demotion()
    """Triggers that demote the workflow at once, without a human."""

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
        problem = routing.match_problem(self.match)
        if problem is not None:
            raise ValueError(problem)
        return self

    def matches(self, case_fields: Mapping[str, str | None]) -> bool:
        """Does a case with these routing fields fall in the workflow?"""
        return routing.matches(self.match, case_fields)
