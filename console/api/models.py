"""Request and response bodies of the HTTP API (they are also its OpenAPI schema)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from policy.catalog import ActionName

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Scalar = None | bool | int | float | str
IdempotencyKey = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,128}$"),
    Field(
        description="Chosen by the client, unique per intended review (8-128 of A-Z a-z "
        "0-9 . _ : -). Sending it again returns the same review_id and produces no second "
        "event."
    ),
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Verdict = Literal["approve", "reject", "override"]


class Strict(BaseModel):
    # Unknown fields are errors: an `actor` in the body is refused, never used.
    model_config = ConfigDict(extra="forbid", frozen=True)


class OverrideAction(Strict):
    action: ActionName = Field(description="catalog action the operator chooses instead")
    params: dict[Name, Scalar] = Field(default_factory=dict)


class ReviewRequest(Strict):
    recommendation_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    verdict: Verdict
    reason: Reason | None = Field(
        default=None, description="required to reject or override; optional to approve"
    )
    override: OverrideAction | None = Field(
        default=None, description="the operator's own action; required with verdict override"
    )
    idempotency_key: IdempotencyKey
    params_hash: Annotated[str, StringConstraints(min_length=64, max_length=64)] | None = Field(
        default=None,
        description="the params_hash of the item you were shown (GET /api/queue/{id}); a "
        "review of an item that holds something else by now is refused with 409",
    )
    policy_version: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="the policy_version of the item you were shown"
    )

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Rules across fields, each against the field at fault."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.verdict in ("reject", "override") and self.reason is None:
            found.append((("body", "reason"), f"a reason is required to {self.verdict}"))
        if self.verdict == "override" and self.override is None:
            found.append((("body", "override"), "an override needs the action to run instead"))
        if self.verdict != "override" and self.override is not None:
            found.append(
                (("body", "override"), f"only an override carries an action, not {self.verdict}")
            )
        return found


class ReclassifyRequest(Strict):
    category: Name = Field(description="the issue class the case really belongs to")
    reason: Reason
    idempotency_key: IdempotencyKey


class Submitted(BaseModel):
    review_id: str
    event_id: str
    event_type: str
    case_id: str
    recommendation_id: str | None = None
    actor: str
    replayed: bool = Field(description="true when the idempotency key had been used before")


class Me(BaseModel):
    operator: str
    roles: list[str]


class SimilarCase(BaseModel):
    case_id: str
    similarity: float
    trace: str = Field(description="API path of that case's trace")


class Recommended(BaseModel):
    action: str | None
    params: dict[str, Any]
    summary: str | None


class Why(BaseModel):
    rationale: str | None
    similar_cases: list[SimilarCase]
    confidence: float | None
    predicted_category: str | None
    guard_reasons: list[str]


class IfAccepted(BaseModel):
    description: str | None
    effects: dict[str, Any]
    risk: str | None
    reversible: bool | None
    rollback_action: str | None
    executed_by_casegate: bool = Field(
        description="false for suggest-only actions the operator carries out by hand"
    )
    approvals_required: int
    approvals_received: int
    approvers: list[str]
    eligible_roles: list[str]
    expires_at: datetime | None


class YouMay(BaseModel):
    approve: bool
    reject: bool
    override: list[str] = Field(description="catalog actions you may override to")
    reclassify: bool


class QueueItem(BaseModel):
    recommendation_id: str
    case_id: str
    subject: str | None
    queue: str | None
    team: str | None
    channel: str | None
    issue_class: str | None
    priority: str | None
    workflow: str | None
    phase: str | None
    policy_version: str | None
    requested_at: datetime | None
    recommended: Recommended = Field(
        description="exactly what will execute if approved: the recommended action, or an "
        "operator's override of it (see proposed_by)"
    )
    params_hash: str | None = Field(
        default=None, description="digest of that action; send it with your review"
    )
    proposed_by: str | None = Field(
        default=None, description="operator who proposed this action by override (null: AI)"
    )
    why: Why
    if_accepted: IfAccepted
    you_may: YouMay


class TraceEvent(BaseModel):
    occurred_at: datetime
    event_type: str
    actor: str | None
    summary: str
    where: str = Field(description="topic[partition]@offset")
    event_id: str
    detail: dict[str, Any] | None = Field(description="the event's JSON form; null when hidden")
    trace_id: str | None = Field(
        None, description="the W3C trace id its record carried (OpenTelemetry), if any"
    )


class CaseTrace(BaseModel):
    case_id: str
    case: dict[str, Any] | None
    events: list[TraceEvent]
    ai_output_hidden: bool = Field(
        description="true while the case's AI output must not be shown (shadow phase or out "
        "of scope, until the case is resolved)"
    )


class FailedExecution(BaseModel):
    execution_id: str
    case_id: str
    recommendation_id: str | None
    action_name: str | None
    action_params: dict[str, Any] | None
    status: str
    error_class: str | None
    message: str | None
    timed_out: bool
    rolled_back: bool
    requested_by: str | None
    requested_at: datetime | None
    finished_at: datetime | None


class Denial(BaseModel):
    kind: Literal["guard", "review"]
    case_id: str
    recommendation_id: str | None
    occurred_at: datetime | None
    actor: str | None
    action_name: str | None
    reasons: list[str]
    detail: str | None


class Attention(BaseModel):
    failed_executions: list[FailedExecution]
    denials: list[Denial]


class PolicyInfo(BaseModel):
    version: str
    sha256: str
    author: str
    published_at: datetime
    workflows: dict[str, str] = Field(description="workflow -> phase")
    warnings: list[str] = Field(
        default_factory=list,
        description="settings that can never take effect on this deployment, as "
        "`path: why` (docs/policy-reference.md, semantic checks)",
    )


class Check(BaseModel):
    name: str
    comparison: Literal[">=", "<="]
    threshold: float
    value: float | None
    passed: bool | None = Field(description="null when there is no data to judge")
    basis: str


class Readiness(BaseModel):
    workflow: str
    phase: str
    next_phase: str | None
    sample: int
    min_sample: int
    checks: list[Check]
    ready: bool
    verdict: str


class MetricsRow(BaseModel):
    model_config = ConfigDict(extra="allow")

    day: date | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]
