"""``recommendation_facts``, ``executions`` and the published policies' catalogs.

One row per recommendation gathers what was recommended, what the guardrails decided and
what humans made of it; ``approval_queue``, ``metrics`` and ``shadow_alignment`` are views
over these rows (migration 002), so every figure can be traced back to its events.

What each event does to its recommendation's row, in the order the batch holds them:

- ``RecommendationProduced``: what was recommended (time, category, confidence, summary,
  rationale, similar cases, provenance); workflow and action only while no guard decision
  is recorded, since the guard's view of them wins whichever event is read first;
- ``GuardrailDecided``: workflow, phase, action, outcome, reasons, policy version, decision
  time, approvals required, eligible roles, expiry; review status ``pending`` when approval
  is required, else none;
- ``ReviewRecorded``: approvals received, the approver added once, ``overridden`` once an
  override was seen; ``ReviewDenied``: ``reviews_denied`` + 1;
- ``ApprovalCompleted``: review status approved / rejected, verdict accepted (or
  ``overridden`` when an override was recorded before) / rejected, the final action, the
  closing time; ``ApprovalExpired``: review status ``expired`` and the closing time.

And to its execution's row: ``ExecutionRequested`` sets what was requested (the status
only when it creates the row: ``requested``); ``ExecutionSucceeded`` / ``ExecutionFailed``
set status (``rolled_back`` stays), error, message, timeout and finishing time;
``ExecutionRolledBack`` sets status ``rolled_back`` and appends its account to the message.
A row created by a finishing event also takes its action name (and a rollback's time).
Published policies and their catalog actions are inserted once per version.

As in ``projections.case_state``, a batch is folded per key in Python first (the row a key
without one gets, plus the control columns that say how the batch changes a stored row),
staged with one COPY per table, and merged with one ``INSERT … SELECT … ON CONFLICT``
statement per table, evaluated against the stored row as locked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from projections.envelope import Envelope
from projections.staging import Load, Stage
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionRolledBack,
    ExecutionSucceeded,
    GuardrailDecided,
    PolicyPublished,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
    action_digest,
)

log = logging.getLogger(__name__)

FACT_COLUMNS = (
    "recommendation_id",
    "case_id",
    "produced_at",
    "workflow",
    "phase",
    "predicted_category",
    "confidence",
    "action_name",
    "action_params",
    "summary",
    "rationale",
    "similar_cases",
    "provenance",
    "outcome",
    "reasons",
    "policy_version",
    "decided_at",
    "approvals_required",
    "approvals_received",
    "approvers",
    "eligible_roles",
    "expires_at",
    "review_status",
    "verdict",
    "final_action_name",
    "final_action_params",
    "overridden",
    "reviews_denied",
    "closed_at",
    "pending_action_name",
    "pending_action_params",
    "params_hash",
    "item_policy_version",
    "proposed_by",
)
FACT_CONTROL = (
    ("p_item", "boolean"),
    ("p_approvers", "boolean"),
    ("p_status_set", "boolean"),
    ("p_reviewed", "boolean"),
    ("p_verdict", "text"),
    ("p_overridden_before", "boolean"),
)
FACT_STAGE_COLUMNS = (*FACT_COLUMNS, *(name for name, _ in FACT_CONTROL))

# s: the stored row (locked); d: the batch's delta (RecommendationDelta). A delta's
# produced_at / decided_at are set exactly when the batch holds a RecommendationProduced /
# GuardrailDecided.
MERGE_FACTS = """
INSERT INTO recommendation_facts AS s (recommendation_id, case_id, produced_at, workflow,
    phase, predicted_category, confidence, action_name, action_params, summary, rationale,
    similar_cases, provenance, outcome, reasons, policy_version, decided_at,
    approvals_required, approvals_received, approvers, eligible_roles, expires_at,
    review_status, verdict, final_action_name, final_action_params, overridden,
    reviews_denied, closed_at, pending_action_name, pending_action_params, params_hash,
    item_policy_version, proposed_by)
SELECT recommendation_id, case_id, produced_at, workflow, phase, predicted_category,
    confidence, action_name, action_params, summary, rationale, similar_cases, provenance,
    outcome, reasons, policy_version, decided_at, approvals_required, approvals_received,
    approvers, eligible_roles, expires_at, review_status, verdict, final_action_name,
    final_action_params, overridden, reviews_denied, closed_at, pending_action_name,
    pending_action_params, params_hash, item_policy_version, proposed_by
FROM d
ON CONFLICT (recommendation_id) DO UPDATE SET (produced_at, workflow, phase,
    predicted_category, confidence, action_name, action_params, summary, rationale,
    similar_cases, provenance, outcome, reasons, policy_version, decided_at,
    approvals_required, approvals_received, approvers, eligible_roles, expires_at,
    review_status, verdict, final_action_name, final_action_params, overridden,
    reviews_denied, closed_at, pending_action_name, pending_action_params, params_hash,
    item_policy_version, proposed_by) = (
SELECT
    coalesce(d.produced_at, s.produced_at),
    -- The guard's workflow and action win; the recommender's count only before a decision.
    CASE WHEN d.decided_at IS NOT NULL OR (d.produced_at IS NOT NULL AND s.decided_at IS NULL)
         THEN d.workflow ELSE s.workflow END,
    CASE WHEN d.decided_at IS NOT NULL THEN d.phase ELSE s.phase END,
    CASE WHEN d.produced_at IS NOT NULL THEN d.predicted_category
         ELSE s.predicted_category END,
    CASE WHEN d.produced_at IS NOT NULL THEN d.confidence ELSE s.confidence END,
    CASE WHEN d.decided_at IS NOT NULL OR (d.produced_at IS NOT NULL AND s.decided_at IS NULL)
         THEN d.action_name ELSE s.action_name END,
    CASE WHEN d.decided_at IS NOT NULL OR (d.produced_at IS NOT NULL AND s.decided_at IS NULL)
         THEN d.action_params ELSE s.action_params END,
    CASE WHEN d.produced_at IS NOT NULL THEN d.summary ELSE s.summary END,
    CASE WHEN d.produced_at IS NOT NULL THEN d.rationale ELSE s.rationale END,
    CASE WHEN d.produced_at IS NOT NULL THEN d.similar_cases ELSE s.similar_cases END,
    CASE WHEN d.produced_at IS NOT NULL THEN d.provenance ELSE s.provenance END,
    CASE WHEN d.decided_at IS NOT NULL THEN d.outcome ELSE s.outcome END,
    CASE WHEN d.decided_at IS NOT NULL THEN d.reasons ELSE s.reasons END,
    CASE WHEN d.decided_at IS NOT NULL THEN d.policy_version ELSE s.policy_version END,
    coalesce(d.decided_at, s.decided_at),
    CASE WHEN d.decided_at IS NOT NULL OR d.p_item THEN d.approvals_required
         ELSE s.approvals_required END,
    CASE WHEN d.p_reviewed THEN d.approvals_received ELSE s.approvals_received END,
    -- The item's own list when the batch says what the item holds (an override starts
    -- it again); else each approver once, in the order first seen.
    CASE WHEN d.p_approvers THEN d.approvers
         ELSE s.approvers || ARRAY(SELECT a FROM unnest(d.approvers) WITH ORDINALITY
                                   AS u (a, n) WHERE a <> ALL (s.approvers) ORDER BY n) END,
    CASE WHEN d.decided_at IS NOT NULL OR d.p_item THEN d.eligible_roles
         ELSE s.eligible_roles END,
    CASE WHEN d.decided_at IS NOT NULL THEN d.expires_at ELSE s.expires_at END,
    CASE WHEN d.p_status_set THEN d.review_status ELSE s.review_status END,
    -- An approval of the recommended action counts as overridden once an override was
    -- recorded before it, stored or earlier in the batch.
    CASE WHEN d.p_verdict IS NULL THEN s.verdict
         WHEN d.p_verdict = 'accepted' AND (s.overridden OR d.p_overridden_before)
         THEN 'overridden' ELSE d.p_verdict END,
    CASE WHEN d.p_verdict IS NOT NULL THEN d.final_action_name ELSE s.final_action_name END,
    CASE WHEN d.p_verdict IS NOT NULL THEN d.final_action_params
         ELSE s.final_action_params END,
    s.overridden OR d.overridden,
    s.reviews_denied + d.reviews_denied,
    coalesce(d.closed_at, s.closed_at),
    CASE WHEN d.p_item THEN d.pending_action_name ELSE s.pending_action_name END,
    CASE WHEN d.p_item THEN d.pending_action_params ELSE s.pending_action_params END,
    CASE WHEN d.p_item THEN d.params_hash ELSE s.params_hash END,
    CASE WHEN d.p_item THEN d.item_policy_version ELSE s.item_policy_version END,
    CASE WHEN d.p_item THEN d.proposed_by ELSE s.proposed_by END
FROM d WHERE d.recommendation_id = s.recommendation_id)
"""

EXECUTION_COLUMNS = (
    "execution_id",
    "recommendation_id",
    "case_id",
    "action_name",
    "action_params",
    "mode",
    "requested_by",
    "policy_version",
    "requested_at",
    "status",
    "error_class",
    "message",
    "timed_out",
    "rolled_back",
    "finished_at",
)
EXECUTION_CONTROL = (
    ("p_finished", "boolean"),
    ("p_finished_status", "text"),
    ("p_message", "text"),
    ("p_rollback_messages", "text"),
)
EXECUTION_STAGE_COLUMNS = (*EXECUTION_COLUMNS, *(name for name, _ in EXECUTION_CONTROL))

# x: the stored row (locked); d: the batch's delta (ExecutionDelta). A delta's requested_at
# is set exactly when the batch holds an ExecutionRequested, rolled_back when it holds an
# ExecutionRolledBack.
MERGE_EXECUTIONS = """
INSERT INTO executions AS x (execution_id, recommendation_id, case_id, action_name,
    action_params, mode, requested_by, policy_version, requested_at, status, error_class,
    message, timed_out, rolled_back, finished_at)
SELECT execution_id, recommendation_id, case_id, action_name, action_params, mode,
    requested_by, policy_version, requested_at, status, error_class, message, timed_out,
    rolled_back, finished_at
FROM d
ON CONFLICT (execution_id) DO UPDATE SET (recommendation_id, action_name, action_params,
    mode, requested_by, policy_version, requested_at, status, error_class, message,
    timed_out, rolled_back, finished_at) = (
SELECT
    CASE WHEN d.requested_at IS NOT NULL THEN d.recommendation_id
         ELSE x.recommendation_id END,
    CASE WHEN d.requested_at IS NOT NULL THEN d.action_name ELSE x.action_name END,
    CASE WHEN d.requested_at IS NOT NULL THEN d.action_params ELSE x.action_params END,
    CASE WHEN d.requested_at IS NOT NULL THEN d.mode ELSE x.mode END,
    CASE WHEN d.requested_at IS NOT NULL THEN d.requested_by ELSE x.requested_by END,
    CASE WHEN d.requested_at IS NOT NULL THEN d.policy_version ELSE x.policy_version END,
    coalesce(d.requested_at, x.requested_at),
    -- Once rolled back, always rolled back.
    CASE WHEN d.rolled_back OR (d.p_finished AND x.rolled_back) THEN 'rolled_back'
         WHEN d.p_finished THEN d.p_finished_status ELSE x.status END,
    CASE WHEN d.p_finished THEN d.error_class ELSE x.error_class END,
    CASE WHEN d.p_finished THEN d.p_message
         WHEN d.rolled_back THEN coalesce(x.message || '; ', '') || d.p_rollback_messages
         ELSE x.message END,
    CASE WHEN d.p_finished THEN d.timed_out ELSE x.timed_out END,
    x.rolled_back OR d.rolled_back,
    CASE WHEN d.p_finished THEN d.finished_at ELSE x.finished_at END
FROM d WHERE d.execution_id = x.execution_id)
"""

POLICY_COLUMNS = ("version", "sha256", "author", "published_at", "document")
CATALOG_COLUMNS = (
    "policy_version",
    "name",
    "description",
    "risk",
    "effects",
    "reversible",
    "rollback_action",
    "permission",
    "approvals",
    "approval_roles",
)
# A version is published once: the first row for it stays.
MERGE_POLICIES = """
INSERT INTO policy_versions (version, sha256, author, published_at, document)
SELECT version, sha256, author, published_at, document FROM d
ON CONFLICT (version) DO NOTHING
"""
MERGE_CATALOG = """
INSERT INTO catalog_actions (policy_version, name, description, risk, effects, reversible,
    rollback_action, permission, approvals, approval_roles)
SELECT policy_version, name, description, risk, effects, reversible, rollback_action,
    permission, approvals, approval_roles
FROM d
ON CONFLICT DO NOTHING
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _action(action: ActionSpec | None) -> tuple[str | None, str | None]:
    """(name, params as JSON) of an action, or (None, None)."""
    if action is None:
        return None, None
    return action.name, _json(action.params)


# A recommendation's row before any event (the columns' defaults).
_EMPTY_FACTS: dict[str, Any] = {
    **dict.fromkeys(FACT_COLUMNS),
    "approvals_received": 0,
    "overridden": False,
    "reviews_denied": 0,
}


class RecommendationDelta:
    """One recommendation's events of a batch, folded in order.

    ``row``: the row the batch leaves if the recommendation had none. Every event's former
    upsert inserted what its update does to an empty row (counters 0, no approvers), so
    the fold applies the updates to such a row; ``case_id`` comes from the first event.
    The ``p_*`` fields say how the batch changes a stored row: ``p_status_set``, some event
    set the review status; ``p_reviewed``, a review set the approvals received;
    ``p_verdict``, the verdict of the batch's last ApprovalCompleted before the override
    check; ``p_overridden_before``, an override in the batch came before that completion.
    """

    __slots__ = (
        "p_approvers",
        "p_item",
        "p_overridden_before",
        "p_reviewed",
        "p_status_set",
        "p_verdict",
        "row",
    )

    def __init__(self, recommendation_id: str, case_id: str) -> None:
        self.row: dict[str, Any] = _EMPTY_FACTS.copy()
        self.row["recommendation_id"] = recommendation_id
        self.row["case_id"] = case_id
        self.row["approvers"] = []
        self.p_item = False
        self.p_approvers = False
        self.p_status_set = False
        self.p_reviewed = False
        self.p_verdict: str | None = None
        self.p_overridden_before = False

    def apply(self, e: Event) -> None:
        """Fold one event in (the rules in the module docstring)."""
        row, at = self.row, e.occurred_at
        match e:
            case RecommendationProduced():
                row["produced_at"] = at
                if row["decided_at"] is None:
                    row["workflow"] = e.workflow
                    row["action_name"], row["action_params"] = _action(e.action)
                row["predicted_category"] = e.category
                row["confidence"] = e.confidence
                row["summary"] = e.summary
                row["rationale"] = e.rationale
                row["similar_cases"] = _json(
                    [{"case_id": s.case_id, "similarity": s.similarity} for s in e.similar_cases]
                )
                p = e.provenance
                row["provenance"] = _json(
                    {
                        "recommender": p.recommender,
                        "model": p.model,
                        "prompt_version": p.prompt_version,
                        "policy_version": p.policy_version,
                        "fields_seen": list(p.fields_seen),
                        "input_sha256": p.input_sha256,
                        "fallback_reason": p.fallback_reason,
                    }
                )
            case GuardrailDecided():
                row["workflow"], row["phase"] = e.workflow, e.phase
                row["action_name"], row["action_params"] = _action(e.action)
                row["outcome"] = e.outcome
                row["reasons"] = list(e.reasons)
                row["policy_version"] = e.policy_version
                row["decided_at"] = at
                row["approvals_required"] = e.approvals_required
                row["eligible_roles"] = list(e.eligible_roles)
                row["expires_at"] = e.expires_at
                self._review_status("pending" if e.outcome == "approval_required" else None)
                if e.action is not None:
                    self._item(e.action, e.policy_version, None)
            case ReviewRecorded():
                row["approvals_received"] = e.approvals_received
                if e.action is not None and e.policy_version is not None:
                    # Written since reviews are bound: the item's state as it now is.
                    self._item(e.action, e.policy_version, e.proposed_by)
                    row["approvers"] = list(e.approvers)
                    self.p_approvers = True
                    row["approvals_required"] = e.approvals_required
                    row["eligible_roles"] = list(e.eligible_roles)
                elif e.actor not in row["approvers"]:
                    row["approvers"].append(e.actor)
                row["overridden"] = row["overridden"] or e.verdict == "override"
                self.p_reviewed = True
            case ReviewDenied():
                row["reviews_denied"] += 1
            case ApprovalCompleted() if e.outcome == "closed":
                # Closed without a verdict (case resolved, action withdrawn): no review.
                self._review_status("closed")
                row["closed_at"] = at
            case ApprovalCompleted():
                approved = e.outcome == "approved"
                verdict = "accepted" if approved else "rejected"
                self._review_status("approved" if approved else "rejected")
                row["verdict"] = (
                    "overridden" if verdict == "accepted" and row["overridden"] else verdict
                )
                row["final_action_name"], row["final_action_params"] = _action(e.action)
                row["closed_at"] = at
                self.p_verdict = verdict
                # With no stored row, overridden so far is the batch's own overrides.
                self.p_overridden_before = row["overridden"]
            case ApprovalExpired():
                self._review_status("expired")
                row["closed_at"] = at

    def _item(self, action: ActionSpec, version: str, proposed_by: str | None) -> None:
        """What the approval item now holds: the action a review must name, by digest."""
        row = self.row
        row["pending_action_name"], row["pending_action_params"] = _action(action)
        row["params_hash"] = action_digest(action)
        row["item_policy_version"] = version
        row["proposed_by"] = proposed_by
        self.p_item = True

    def _review_status(self, status: str | None) -> None:
        self.row["review_status"] = status
        self.p_status_set = True

    def staged(self) -> tuple[Any, ...]:
        """The staging row, in ``FACT_STAGE_COLUMNS`` order."""
        return (
            *self.row.values(),
            self.p_item,
            self.p_approvers,
            self.p_status_set,
            self.p_reviewed,
            self.p_verdict,
            self.p_overridden_before,
        )


def _recommendation_of(e: Event) -> str | None:
    """The recommendation an event changes the facts of, if any."""
    match e:
        case (
            RecommendationProduced()
            | GuardrailDecided()
            | ReviewRecorded()
            | ApprovalCompleted()
            | ApprovalExpired()
        ):
            return e.recommendation_id
        case ReviewDenied():
            # A review refused before it named a recommendation changes no facts.
            return e.recommendation_id or None
    return None


def _then(message: str | None, more: str) -> str:
    """SQL ``coalesce(message || '; ', '') || more``."""
    return more if message is None else f"{message}; {more}"


class ExecutionDelta:
    """One execution's events of a batch, folded in order.

    ``row``: the row the batch leaves if the execution had none; here the first event's
    insert differs from its update (a finishing event that creates the row also sets its
    action name, a rollback its time), so ``row`` is None until the first event inserts.
    The ``p_*`` fields say how the batch changes a stored row: ``p_finished``, a success
    or failure was seen, with the status it set (``p_finished_status``) and the message
    the batch leaves after it (``p_message``: the last one's, with later rollbacks
    appended); ``p_rollback_messages``, without a finishing event, what rollbacks append.
    """

    __slots__ = (
        "execution_id",
        "p_finished",
        "p_finished_status",
        "p_message",
        "p_rollback_messages",
        "row",
    )

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.row: dict[str, Any] | None = None
        self.p_finished = False
        self.p_finished_status: str | None = None
        self.p_message: str | None = None
        self.p_rollback_messages: str | None = None

    def apply(self, e: Event) -> None:
        """Fold one event in (the rules in the module docstring)."""
        at = e.occurred_at
        match e:
            case ExecutionRequested():
                name, params = _action(e.action)
                requested = {
                    "recommendation_id": e.recommendation_id,
                    "action_name": name,
                    "action_params": params,
                    "mode": e.mode,
                    "requested_by": e.requested_by,
                    "policy_version": e.policy_version,
                    "requested_at": at,
                }
                if self.row is None:
                    self.row = self._new(e.case_id, status="requested", **requested)
                else:
                    self.row.update(requested)
            case ExecutionSucceeded() | ExecutionFailed():
                finished: dict[str, Any]
                if isinstance(e, ExecutionFailed):
                    status = "failed"
                    finished = {
                        "error_class": e.error_class,
                        "message": e.message,
                        "timed_out": e.timed_out,
                        "finished_at": at,
                    }
                else:
                    status = "succeeded"
                    finished = {
                        "error_class": None,
                        "message": None,
                        "timed_out": False,
                        "finished_at": at,
                    }
                if self.row is None:
                    self.row = self._new(
                        e.case_id, action_name=e.action_name, status=status, **finished
                    )
                else:
                    self.row.update(finished)
                    self.row["status"] = "rolled_back" if self.row["rolled_back"] else status
                self.p_finished, self.p_finished_status = True, status
                self.p_message = finished["message"]
            case ExecutionRolledBack():
                message = f"rolled back with {e.rollback_action}: {e.reason}"
                if self.row is None:
                    self.row = self._new(
                        e.case_id,
                        action_name=e.action_name,
                        status="rolled_back",
                        rolled_back=True,
                        message=message,
                        finished_at=at,
                    )
                else:
                    self.row.update(
                        status="rolled_back",
                        rolled_back=True,
                        message=_then(self.row["message"], message),
                    )
                if self.p_finished:
                    self.p_message = _then(self.p_message, message)
                else:
                    self.p_rollback_messages = _then(self.p_rollback_messages, message)

    def _new(self, case_id: str, **values: Any) -> dict[str, Any]:
        """The row the first event inserts (the columns' defaults where it sets none)."""
        row: dict[str, Any] = dict.fromkeys(EXECUTION_COLUMNS)
        row.update(execution_id=self.execution_id, case_id=case_id)
        row.update(timed_out=False, rolled_back=False)
        row.update(values)
        return row

    def staged(self) -> tuple[Any, ...]:
        """The staging row, in ``EXECUTION_STAGE_COLUMNS`` order."""
        if self.row is None:
            raise RuntimeError(f"execution {self.execution_id}: no event folded in")
        return (
            *self.row.values(),
            self.p_finished,
            self.p_finished_status,
            self.p_message,
            self.p_rollback_messages,
        )


EXECUTION_EVENTS = (ExecutionRequested, ExecutionSucceeded, ExecutionFailed, ExecutionRolledBack)


def fold_facts(events: Iterable[Event]) -> dict[str, RecommendationDelta]:
    """Each recommendation's events folded into one delta, in the order given."""
    deltas: dict[str, RecommendationDelta] = {}
    for e in events:
        rec = _recommendation_of(e)
        if rec is None:
            continue
        delta = deltas.get(rec)
        if delta is None:
            delta = deltas[rec] = RecommendationDelta(rec, e.case_id)
        delta.apply(e)
    return deltas


def fold_executions(events: Iterable[Event]) -> dict[str, ExecutionDelta]:
    """Each execution's events folded into one delta, in the order given."""
    deltas: dict[str, ExecutionDelta] = {}
    for e in events:
        if isinstance(e, EXECUTION_EVENTS):
            delta = deltas.get(e.execution_id)
            if delta is None:
                delta = deltas[e.execution_id] = ExecutionDelta(e.execution_id)
            delta.apply(e)
    return deltas


def policy_rows(
    events: Iterable[Event],
) -> tuple[dict[str, tuple[Any, ...]], dict[tuple[str, str], tuple[Any, ...]]]:
    """The policy_versions and catalog_actions rows of the published policies, the first
    of each key kept (as the inserts that ignore a second one)."""
    from policy.loader import PolicyInvalid, load_policy_text

    versions: dict[str, tuple[Any, ...]] = {}
    actions: dict[tuple[str, str], tuple[Any, ...]] = {}
    for e in events:
        if not isinstance(e, PolicyPublished):
            continue
        versions.setdefault(e.version, (e.version, e.sha256, e.author, e.occurred_at, e.document))
        try:
            policy = load_policy_text(e.document).policy
        except PolicyInvalid as exc:
            # The publisher validates first; an invalid document here is kept (audited) but
            # contributes no catalog.
            log.warning("policy %s (event %s) does not load: %s", e.version, e.event_id, exc)
            continue
        for action in policy.catalog.values():
            actions.setdefault(
                (e.version, action.name),
                (
                    e.version,
                    action.name,
                    action.description,
                    action.risk,
                    _json(action.effects.model_dump(exclude_none=True)),
                    action.reversible,
                    action.rollback.action if action.rollback else None,
                    action.permission,
                    action.approvals.count,
                    list(action.approvals.roles),
                ),
            )
    return versions, actions


class RecommendationFactsProjection:
    name: str = "recommendation_facts"

    def __init__(self) -> None:
        self.facts = Stage(
            "recommendation_facts_stage",
            "recommendation_facts",
            FACT_CONTROL,
            key=("recommendation_id",),
        )
        self.executions = Stage(
            "executions_stage", "executions", EXECUTION_CONTROL, key=("execution_id",)
        )
        self.policies = Stage("policy_versions_stage", "policy_versions")
        self.catalog = Stage("catalog_actions_stage", "catalog_actions")

    def prepare(self, cur: psycopg.Cursor) -> None:
        for stage in (self.facts, self.executions, self.policies, self.catalog):
            stage.create(cur)

    @staticmethod
    def plan(batch: Sequence[Envelope]) -> FactsPlan:
        """The staging rows of every table the batch touches."""
        events = [env.event for env in batch]
        versions, actions = policy_rows(events)
        return FactsPlan(
            list(versions.values()),
            list(actions.values()),
            [d.staged() for d in fold_facts(events).values()],
            [d.staged() for d in fold_executions(events).values()],
        )

    def apply(self, load: Load, plan: FactsPlan) -> None:
        """One merge per table the batch touches (none for the others)."""
        # Policies first: catalog actions refer to their version.
        load.merge(self.policies, POLICY_COLUMNS, plan.policies, MERGE_POLICIES)
        load.merge(self.catalog, CATALOG_COLUMNS, plan.catalog, MERGE_CATALOG)
        load.merge(self.facts, FACT_STAGE_COLUMNS, plan.facts, MERGE_FACTS)
        load.merge(self.executions, EXECUTION_STAGE_COLUMNS, plan.executions, MERGE_EXECUTIONS)


@dataclass(frozen=True)
class FactsPlan:
    """A batch's staging rows for the policy, recommendation and execution tables."""

    policies: list[tuple[Any, ...]]
    catalog: list[tuple[Any, ...]]
    facts: list[tuple[Any, ...]]
    executions: list[tuple[Any, ...]]
