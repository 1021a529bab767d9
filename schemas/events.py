"""The casegate event vocabulary: one frozen dataclass per `schemas/<EventType>.avsc`.

Events are immutable facts in the past tense. Field names, order and nullability mirror
the .avsc files exactly (a contract test checks it); conversion to and from dicts lives
at the serializer edge (`schemas.converters`, `schemas.codec`, `schemas.jsonform`).

Timestamps are timezone-aware UTC datetimes. Avro keeps milliseconds, so build them
with `utc_now()` (or truncate yourself) when an exact round trip matters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import ClassVar, TypedDict

# Avro union ["null","boolean","long","double","string"]: the values maps may carry.
Scalar = None | bool | int | float | str

# The deployment's secret for derived ids (see ``derived_event_id``), installed once per
# process by its composition root (``infra.secrets.install_event_id_key``).
_event_id_key: bytes | None = None


class EventIdKeyMissing(RuntimeError):
    """A derived id was asked for before the process installed its deployment's key."""


def install_event_id_key(key: bytes | None) -> bytes | None:
    """Make ``key`` the secret every derived id of this process is computed with; returns
    the key it replaces (tests put it back). ``None`` uninstalls it."""
    global _event_id_key
    if key is not None and len(key) < 16:
        raise ValueError("the event-id key must be at least 16 bytes")
    previous, _event_id_key = _event_id_key, key
    return previous


def derived_event_id(cause_event_id: str, kind: str) -> str:
    """Deterministic id of the event of `kind` derived from `cause_event_id`.

    Redelivery of the cause yields the same id, so consumers can drop duplicates. The id
    is HMAC-SHA256 under the deployment's secret key, formatted as a UUID (version 8):
    upstream chooses the ids of its own events, and with a public derivation it could
    compute every later id in advance and send decoys carrying them.
    """
    key = _event_id_key
    if key is None:
        raise EventIdKeyMissing(
            "no event-id key installed in this process: its main() must call "
            "infra.secrets.install_event_id_key(settings) before deriving ids"
        )
    message = f"{cause_event_id}:{kind}".encode("utf-8", "surrogatepass")
    digest = bytearray(hmac.new(key, message, hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom (RFC 9562)
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC variant
    return str(uuid.UUID(bytes=bytes(digest)))


def action_digest(action: ActionSpec) -> str:
    """SHA-256 (hex) of an action's name and parameters in one canonical JSON form.

    What an approval is bound to: a review names the digest of what its operator saw,
    and the approve rules refuse it if the item's action is no longer that one.
    """
    canonical = json.dumps(
        {"name": action.name, "params": action.params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ReviewBinding(TypedDict, total=False):
    """The ReviewSubmitted fields binding a review (empty: an unbound review)."""

    action_name: str
    params_hash: str
    policy_version: str


def review_binding(action: ActionSpec, policy_version: str) -> ReviewBinding:
    """The ReviewSubmitted fields that bind a review to the item its operator was shown."""
    return {
        "action_name": action.name,
        "params_hash": action_digest(action),
        "policy_version": policy_version,
    }


def record_key(event: Event) -> bytes:
    """The Kafka record key of `event`: its case_id, except a policy's, which is its
    version (the `policy` topic holds every version under its own key), and an
    erasure's, which is its customer ref."""
    if isinstance(event, PolicyPublished):
        return event.version.encode("utf-8")
    if isinstance(event, CustomerErased):
        return event.customer_ref.encode("utf-8")
    return event.case_id.encode("utf-8")


def new_event_id() -> str:
    """A fresh random id for an event with no cause (upstream, operator input)."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Current UTC time truncated to milliseconds, the precision Avro keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- shared value records (named types in _types.avsc) ---------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """One catalog action with its parameters."""

    name: str
    params: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """One approver of an approved run, with the roles they approved with."""

    actor: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimilarCase:
    case_id: str
    similarity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """How a recommendation was produced: recommender, model, inputs, cost."""

    recommender: str  # baseline | llm
    model: str | None = None
    prompt_version: str | None = None
    policy_version: str | None = None
    fields_seen: tuple[str, ...]
    input_sha256: str
    fallback_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    model_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Routing:
    """The fields a workflow's `match` tests, as the case had them at one moment.

    Only structured fields: free text and personal data never take part in routing.
    """

    channel: str
    queue: str
    team: str
    issue_class: str | None = None
    priority: str
    source: str

    def match_fields(self) -> dict[str, str | None]:
        # Its own fields, so the record cannot drift from itself; that they are exactly
        # policy.routing.MATCH_FIELDS is pinned by a unit test (schemas import no policy).
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceCheck:
    """One rollout criterion or demotion trigger: a value against its threshold."""

    name: str
    comparison: str  # ">=" or "<="
    threshold: float
    value: float | None = None
    passed: bool | None = None
    basis: str


# --- bases ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries. Subclasses set `event_type` and `topic`."""

    event_type: ClassVar[str]
    topic: ClassVar[str]  # topic name without the configurable prefix

    event_id: str
    case_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class InternalEvent(Event):
    """An event casegate itself produces, linked to the event it answers."""

    causation_id: str | None = None
    correlation_id: str | None = None


# --- upstream (topic cases): exactly the contract fields --------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseOpened(Event):
    event_type: ClassVar[str] = "CaseOpened"
    topic: ClassVar[str] = "cases"

    source: str
    channel: str
    queue: str
    team: str
    issue_class: str | None = None
    subject: str
    description: str
    priority: str
    customer: dict[str, str]
    attributes: dict[str, Scalar]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseUpdated(Event):
    event_type: ClassVar[str] = "CaseUpdated"
    topic: ClassVar[str] = "cases"

    actor: str
    changes: dict[str, Scalar]
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResolved(Event):
    event_type: ClassVar[str] = "CaseResolved"
    topic: ClassVar[str] = "cases"

    resolved_by: str
    resolution_code: str
    category: str
    actions_taken: tuple[ActionSpec, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseReopened(Event):
    event_type: ClassVar[str] = "CaseReopened"
    topic: ClassVar[str] = "cases"

    reason: str


# --- recommendations --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecommendationProduced(InternalEvent):
    event_type: ClassVar[str] = "RecommendationProduced"
    topic: ClassVar[str] = "recommendations"

    recommendation_id: str
    workflow: str | None = None
    summary: str
    category: str | None = None
    confidence: float
    similar_cases: tuple[SimilarCase, ...]
    action: ActionSpec | None = None
    rationale: str
    provenance: Provenance
    # Absent only from recommendations written before it existed.
    routing: Routing | None = None
    case_bound: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOutputRejected(InternalEvent):
    event_type: ClassVar[str] = "ModelOutputRejected"
    topic: ClassVar[str] = "recommendations"

    recommendation_id: str
    model: str
    raw_output: str
    errors: tuple[str, ...]


# --- decisions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailDecided(InternalEvent):
    event_type: ClassVar[str] = "GuardrailDecided"
    topic: ClassVar[str] = "decisions"

    decision_id: str
    recommendation_id: str
    workflow: str | None = None
    phase: str | None = None  # shadow | assisted | bounded
    outcome: str  # shadowed | approval_required | auto_authorized | denied | out_of_scope
    reasons: tuple[str, ...]
    action: ActionSpec | None = None
    policy_version: str
    approvals_required: int
    eligible_roles: tuple[str, ...]
    expires_at: datetime | None = None
    case_bound: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewRecorded(InternalEvent):
    event_type: ClassVar[str] = "ReviewRecorded"
    topic: ClassVar[str] = "decisions"

    review_id: str
    recommendation_id: str
    actor: str
    roles: tuple[str, ...]
    verdict: str  # approve | reject | override
    approvals_received: int
    approvals_required: int
    action: ActionSpec | None = None
    params_hash: str | None = None
    policy_version: str | None = None
    proposed_by: str | None = None
    eligible_roles: tuple[str, ...] = field(default_factory=tuple)
    approvers: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewDenied(InternalEvent):
    event_type: ClassVar[str] = "ReviewDenied"
    topic: ClassVar[str] = "decisions"

    review_id: str
    recommendation_id: str | None = None
    actor: str
    reason: str  # machine-readable code, e.g. role_not_eligible
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalCompleted(InternalEvent):
    event_type: ClassVar[str] = "ApprovalCompleted"
    topic: ClassVar[str] = "decisions"

    recommendation_id: str
    outcome: str  # approved | rejected | closed (reason says why)
    approvers: tuple[str, ...]
    action: ActionSpec | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalExpired(InternalEvent):
    event_type: ClassVar[str] = "ApprovalExpired"
    topic: ClassVar[str] = "decisions"

    recommendation_id: str
    expired_at: datetime
    approvals_received: int


# --- reviews (operators) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewSubmitted(InternalEvent):
    event_type: ClassVar[str] = "ReviewSubmitted"
    topic: ClassVar[str] = "reviews"

    review_id: str
    recommendation_id: str
    actor: str
    roles: tuple[str, ...]
    verdict: str  # approve | reject | override
    reason: str | None = None
    override_action: ActionSpec | None = None
    idempotency_key: str | None = None
    action_name: str | None = None
    params_hash: str | None = None
    policy_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseReclassified(InternalEvent):
    event_type: ClassVar[str] = "CaseReclassified"
    topic: ClassVar[str] = "reviews"

    review_id: str
    actor: str
    roles: tuple[str, ...]
    category: str
    reason: str | None = None


# --- executions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionRequested(InternalEvent):
    event_type: ClassVar[str] = "ExecutionRequested"
    topic: ClassVar[str] = "executions"

    execution_id: str
    recommendation_id: str
    action: ActionSpec
    mode: str  # auto | approved
    requested_by: str
    policy_version: str
    workflow: str | None = None
    approvals: tuple[Approval, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSucceeded(InternalEvent):
    event_type: ClassVar[str] = "ExecutionSucceeded"
    topic: ClassVar[str] = "executions"

    execution_id: str
    action_name: str
    result: dict[str, Scalar]
    duration_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionFailed(InternalEvent):
    event_type: ClassVar[str] = "ExecutionFailed"
    topic: ClassVar[str] = "executions"

    execution_id: str
    action_name: str
    error_class: str
    retriable: bool
    timed_out: bool
    message: str
    duration_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionRolledBack(InternalEvent):
    event_type: ClassVar[str] = "ExecutionRolledBack"
    topic: ClassVar[str] = "executions"

    execution_id: str
    action_name: str
    rollback_action: str
    reason: str
    succeeded: bool


# --- policy and dead letters ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyPublished(InternalEvent):
    """A policy document; keyed "policy", and case_id is the literal "policy"."""

    event_type: ClassVar[str] = "PolicyPublished"
    topic: ClassVar[str] = "policy"

    version: str
    sha256: str
    author: str
    document: str
    dry_run: str | None = None  # the dry-run looked at, "skipped", or None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettered(InternalEvent):
    """A record a consumer gave up on, kept verbatim; case_id is "" when unknown."""

    event_type: ClassVar[str] = "DeadLettered"
    topic: ClassVar[str] = "deadletter"

    source_topic: str
    source_partition: int
    source_offset: int
    consumer: str
    key: bytes | None = None
    raw: bytes
    headers: dict[str, bytes]
    reason: str
    error_class: str  # UndecodableRecord | UnknownSchema | InvalidEvent | ...


# --- rollout (topics phase-requests and rollout; case_id "workflow:<name>") ------------


def workflow_case_id(workflow: str) -> str:
    """The case_id (and record key) of a workflow's rollout events."""
    return f"workflow:{workflow}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionApprovalSubmitted(InternalEvent):
    """A supervisor approves a promotion proposal, as the console or CLI authenticated them."""

    event_type: ClassVar[str] = "PromotionApprovalSubmitted"
    topic: ClassVar[str] = "phase-requests"

    proposal_id: str
    workflow: str
    policy_version: str
    actor: str
    roles: tuple[str, ...]
    via: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitchPulled(InternalEvent):
    """A supervisor demotes a workflow to shadow at once."""

    event_type: ClassVar[str] = "KillSwitchPulled"
    topic: ClassVar[str] = "phase-requests"

    workflow: str
    actor: str
    roles: tuple[str, ...]
    reason: str
    via: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionProposed(InternalEvent):
    """A workflow qualified for its next phase; the evidence, waiting for approvals."""

    event_type: ClassVar[str] = "PromotionProposed"
    topic: ClassVar[str] = "rollout"

    proposal_id: str
    workflow: str
    from_phase: str
    to_phase: str
    policy_version: str
    policy_sha256: str
    sample: int
    min_sample: int
    window_s: int
    window_start: datetime
    window_end: datetime
    checks: tuple[EvidenceCheck, ...]
    approvals_required: int
    approver_roles: tuple[str, ...]
    proposed_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionApprovalRecorded(InternalEvent):
    """An approval counted towards a proposal's quorum."""

    event_type: ClassVar[str] = "PromotionApprovalRecorded"
    topic: ClassVar[str] = "rollout"

    proposal_id: str
    workflow: str
    actor: str
    roles: tuple[str, ...]
    approvals_received: int
    approvals_required: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutRequestRefused(InternalEvent):
    """An approval or kill request refused, with the reason."""

    event_type: ClassVar[str] = "RolloutRequestRefused"
    topic: ClassVar[str] = "rollout"

    request: str  # approval | kill
    workflow: str
    proposal_id: str | None = None
    actor: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowPromoted(InternalEvent):
    """A proposal got its approvals; the next policy version went out with it."""

    event_type: ClassVar[str] = "WorkflowPromoted"
    topic: ClassVar[str] = "rollout"

    proposal_id: str
    workflow: str
    from_phase: str
    to_phase: str
    from_version: str
    policy_version: str
    approvers: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowDemoted(InternalEvent):
    """A workflow demoted at once by a trigger or the kill switch, with the evidence."""

    event_type: ClassVar[str] = "WorkflowDemoted"
    topic: ClassVar[str] = "rollout"

    workflow: str
    from_phase: str
    to_phase: str
    from_version: str
    policy_version: str
    trigger: str
    actor: str
    reason: str
    checks: tuple[EvidenceCheck, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerErased(InternalEvent):
    """A customer's data keys destroyed (crypto-shredding); keyed by `customer_ref`, and
    case_id is the literal "erasure". No personal data: the ref is a keyed hash."""

    event_type: ClassVar[str] = "CustomerErased"
    topic: ClassVar[str] = "erasures"

    actor: str
    roles: tuple[str, ...]
    customer_ref: str
    key_ids: tuple[str, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessEntry:
    """One operator in an access review, as the reviewer saw them."""

    name: str
    roles: tuple[str, ...]
    status: str  # active | revoked | expired
    last_used_at: datetime | None = None
    unused: bool
    high_impact_approvals: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessReviewed(InternalEvent):
    """A reviewer looked at every operator's access; case_id is "access-review"."""

    event_type: ClassVar[str] = "AccessReviewed"
    topic: ClassVar[str] = "governance"

    reviewer: str
    period_start: datetime
    period_end: datetime
    policy_version: str | None = None
    operators: tuple[AccessEntry, ...]
    note: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        CaseOpened,
        CaseUpdated,
        CaseResolved,
        CaseReopened,
        RecommendationProduced,
        ModelOutputRejected,
        GuardrailDecided,
        ReviewRecorded,
        ReviewDenied,
        ApprovalCompleted,
        ApprovalExpired,
        ReviewSubmitted,
        CaseReclassified,
        ExecutionRequested,
        ExecutionSucceeded,
        ExecutionFailed,
        ExecutionRolledBack,
        PolicyPublished,
        DeadLettered,
        PromotionApprovalSubmitted,
        KillSwitchPulled,
        PromotionProposed,
        PromotionApprovalRecorded,
        RolloutRequestRefused,
        WorkflowPromoted,
        WorkflowDemoted,
        CustomerErased,
        AccessReviewed,
    )
}

# Record types nested inside events, by Avro full name.
VALUE_TYPES: dict[str, type] = {
    "casegate.ActionSpec": ActionSpec,
    "casegate.SimilarCase": SimilarCase,
    "casegate.Approval": Approval,
    "casegate.Provenance": Provenance,
    "casegate.Routing": Routing,
    "casegate.EvidenceCheck": EvidenceCheck,
    "casegate.AccessEntry": AccessEntry,
}
