"""The console's writes: a review or a reclassification becomes one event on `reviews`.

Idempotency, step by step, inside one PostgreSQL transaction:
1. a key seen before answers with its first review_id (same operator and same request),
   or 409 when it was used for something else;
2. the key is inserted (ON CONFLICT DO NOTHING RETURNING) — a concurrent twin waits on
   the key's index entry and then sees the winner's row, so only one request produces;
3. the event is produced and the producer flushed; only after Kafka acknowledged it is
   the key committed. A failed flush raises, the transaction rolls back, and a retry with
   the same key can succeed.
The review_id is derived from (key, actor) and the event_id from the review_id, so even a
message that Kafka accepts after the flush timed out carries the same ids as its retry,
and every consumer drops the duplicate.
The actor and roles always come from the token, never from the request body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message

from console.api import reads
from console.api.deps import Services
from console.api.models import ReclassifyRequest, ReviewRequest, Submitted
from console.api.permissions import may_reclassify, override_refusal, verdict_refusal
from console.api.service_errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from console.auth import Operator
from schemas.envelope import envelope
from schemas.events import (
    ActionSpec,
    CaseReclassified,
    Event,
    ReviewBinding,
    ReviewSubmitted,
    derived_event_id,
    review_binding,
)

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 10.0
STATUS_ERRORS = {403: Forbidden, 409: Conflict, 404: NotFound}


def submit_review(
    svc: Services, conn: psycopg.Connection, operator: Operator, req: ReviewRequest
) -> Submitted:
    """Approve, reject or override a pending recommendation as `operator`."""
    if problems := req.problems():
        raise Invalid(problems)
    fingerprint = _fingerprint("review", req.model_dump(mode="json", exclude={"idempotency_key"}))
    with conn.transaction():
        rec = reads.recommendation(conn, req.recommendation_id)
        if rec is None:
            raise NotFound(f"no recommendation {req.recommendation_id!r}")
        replay = _replay(conn, req.idempotency_key, operator, fingerprint)
        if replay is not None:
            return _answer(replay, ReviewSubmitted, rec["case_id"], operator, True, rec)
        _check_reviewable(svc, conn, operator, req, rec)
        review_id = derived_event_id(req.idempotency_key, operator.name)
        decision = reads.decision_of(conn, rec["case_id"], req.recommendation_id) or {}
        event = ReviewSubmitted(
            # Its id derives from the operator's request; it answers the decision reviewed.
            **envelope(
                review_id,
                ReviewSubmitted.event_type,
                case_id=rec["case_id"],
                occurred_at=svc.clock(),
                causation_id=decision.get("event_id"),
                correlation_id=decision.get("correlation_id"),
            ),
            review_id=review_id,
            recommendation_id=req.recommendation_id,
            actor=operator.name,
            roles=operator.roles,
            verdict=req.verdict,
            reason=req.reason,
            override_action=(
                ActionSpec(name=req.override.action, params=dict(req.override.params))
                if req.override
                else None
            ),
            idempotency_key=req.idempotency_key,
            **_binding(req, rec),
        )
        return _record(svc, conn, operator, req.idempotency_key, fingerprint, event, rec)


def item_binding(rec: dict[str, Any]) -> ReviewBinding:
    """The action, digest and policy version the item holds now, as the read model has it."""
    if rec["item_action_name"] is None or rec["item_policy_version"] is None:
        return {}
    action = ActionSpec(name=rec["item_action_name"], params=dict(rec["item_action_params"] or {}))
    binding = review_binding(action, rec["item_policy_version"])
    if rec["params_hash"] is not None:
        binding["params_hash"] = rec["params_hash"]
    return binding


def _binding(req: ReviewRequest, rec: dict[str, Any]) -> ReviewBinding:
    """What the review is bound to: what the caller says it was shown (409 when the item
    holds something else by now), else what the item holds as this request reads it.
    The approve processor refuses the review if the item changed after that."""
    current = item_binding(rec)
    shown = {"params_hash": req.params_hash, "policy_version": req.policy_version}
    for name, value in shown.items():
        if value is not None and value != current.get(name):  # type: ignore[misc]
            raise Conflict(
                f"recommendation {req.recommendation_id} now holds "
                f"{current.get('action_name')} ({name} {current.get(name)}), not the "
                f"{value} you reviewed: reload it and review again"
            )
    return current


def reclassify(
    svc: Services,
    conn: psycopg.Connection,
    operator: Operator,
    case_id: str,
    req: ReclassifyRequest,
) -> Submitted:
    """Correct a case's issue class as `operator`."""
    body = {"case_id": case_id, **req.model_dump(mode="json", exclude={"idempotency_key"})}
    fingerprint = _fingerprint("reclassify", body)
    with conn.transaction():
        if reads.case_state(conn, case_id) is None:
            raise NotFound(f"no case {case_id!r}")
        replay = _replay(conn, req.idempotency_key, operator, fingerprint)
        if replay is not None:
            return _answer(replay, CaseReclassified, case_id, operator, True)
        in_force = svc.policies.get(conn)
        if not may_reclassify(operator, in_force.loaded.policy if in_force else None):
            raise Forbidden(
                f"operator {operator.name} holds no role of the policy in force "
                f"({', '.join(operator.roles)}); reclassifying needs any operator role"
            )
        opened = reads.case_opened_event(conn, case_id) or {}
        review_id = derived_event_id(req.idempotency_key, operator.name)
        event = CaseReclassified(
            **envelope(
                review_id,
                CaseReclassified.event_type,
                case_id=case_id,
                occurred_at=svc.clock(),
                causation_id=None,
                correlation_id=opened.get("event_id"),
            ),
            review_id=review_id,
            actor=operator.name,
            roles=operator.roles,
            category=req.category,
            reason=req.reason,
        )
        return _record(svc, conn, operator, req.idempotency_key, fingerprint, event)


def _check_reviewable(
    svc: Services,
    conn: psycopg.Connection,
    operator: Operator,
    req: ReviewRequest,
    rec: dict[str, Any],
) -> None:
    """Refuse early, with a clear status, what the approve processor would refuse."""
    if rec["review_status"] != "pending":
        state = rec["review_status"] or f"not awaiting review (guard outcome {rec['outcome']})"
        raise Conflict(f"recommendation {req.recommendation_id} is {state}")
    if rec["expires_at"] is not None and rec["expires_at"] <= svc.clock():
        raise Conflict(
            f"recommendation {req.recommendation_id} expired at {rec['expires_at'].isoformat()}"
        )
    refusal = verdict_refusal(
        operator,
        req.verdict,
        rec["eligible_roles"] or (),
        rec["approvers"] or (),
        rec["proposed_by"],
        rec["item_action_name"],
    )
    if refusal is not None:
        status, message = refusal
        raise STATUS_ERRORS[status](message)
    if req.override is None:
        return
    in_force = svc.policies.get(conn)
    if in_force is None:
        raise Unavailable("no policy has been published, so no override can be checked")
    action = ActionSpec(name=req.override.action, params=dict(req.override.params))
    problem = override_refusal(operator, in_force.loaded.policy, rec["workflow"], action)
    if problem is None:
        return
    status, message = problem
    if status == 422:
        raise Invalid([(("body", "override"), message)])
    raise STATUS_ERRORS[status](message)


def _fingerprint(kind: str, body: dict[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, **body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(conn: psycopg.Connection, key: str, operator: Operator, fingerprint: str) -> str | None:
    """The review_id recorded under `key`, or None when the key is new; 409 on misuse."""
    row = conn.execute(
        "SELECT actor, review_id, request_sha256 FROM review_requests WHERE idempotency_key = %s",
        (key,),
    ).fetchone()
    if row is None:
        return None
    if row[0] != operator.name or row[2] != fingerprint:
        raise Conflict(
            f"idempotency key {key!r} was already used for a different request; "
            "choose a new key for a new review"
        )
    return str(row[1])


def _record(
    svc: Services,
    conn: psycopg.Connection,
    operator: Operator,
    key: str,
    fingerprint: str,
    event: ReviewSubmitted | CaseReclassified,
    rec: dict[str, Any] | None = None,
) -> Submitted:
    claimed = conn.execute(
        "INSERT INTO review_requests (idempotency_key, actor, review_id, request_sha256) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING review_id",
        (key, operator.name, event.review_id, fingerprint),
    ).fetchone()
    if claimed is None:  # a concurrent request with the same key won; answer as it did
        review_id = _replay(conn, key, operator, fingerprint)
        if review_id is None:  # pragma: no cover - the conflicting row is visible by now
            raise Conflict(f"idempotency key {key!r} is being used by another request")
        return _answer(review_id, type(event), event.case_id, operator, True, rec)
    produce_durably(svc, event)
    log.info(
        "%s %s by %s on case %s (review %s, event %s)",
        event.event_type,
        getattr(event, "verdict", getattr(event, "category", "")),
        operator.name,
        event.case_id,
        event.review_id,
        event.event_id,
    )
    return _answer(event.review_id, type(event), event.case_id, operator, False, rec)


def _answer(
    review_id: str,
    kind: type[Event],
    case_id: str,
    operator: Operator,
    replayed: bool,
    rec: dict[str, Any] | None = None,
) -> Submitted:
    return Submitted(
        review_id=review_id,
        event_id=derived_event_id(review_id, kind.event_type),
        event_type=kind.event_type,
        case_id=case_id,
        recommendation_id=rec["recommendation_id"] if rec else None,
        actor=operator.name,
        replayed=replayed,
    )


def produce_durably(svc: Services, event: Event) -> None:
    """Produce `event` keyed by its case and wait for Kafka's acknowledgement (acks=all)."""
    value, encoded_headers = svc.codec.encode(event)
    headers: list[tuple[str, str | bytes | None]] = [(k, v) for k, v in encoded_headers]
    delivered = threading.Event()
    outcome: list[KafkaError | None] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        outcome.append(err)
        delivered.set()

    try:
        svc.producer.produce(
            svc.settings.topic(event.topic),
            key=event.case_id.encode(),
            value=value,
            headers=headers,
            on_delivery=on_delivery,
        )
        svc.producer.flush(FLUSH_TIMEOUT_S)
    except (BufferError, KafkaException) as exc:
        raise Unavailable(
            f"Kafka did not take the event ({exc}); nothing was recorded — retry with the "
            "same idempotency key"
        ) from None
    # Another request's flush may be the one serving this callback; wait for it briefly.
    if not delivered.wait(1.0):
        raise Unavailable(
            f"Kafka did not acknowledge the event within {FLUSH_TIMEOUT_S:.0f}s; retry with "
            "the same idempotency key (a late delivery carries the same ids and is dropped "
            "as a duplicate)"
        )
    if outcome[0] is not None:
        raise Unavailable(
            f"Kafka refused the event ({outcome[0].str()}); retry with the same idempotency key"
        )
