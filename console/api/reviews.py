"""POST /api/reviews and /api/cases/{case_id}/reclassify: operators' decisions, as events."""

from __future__ import annotations

from fastapi import APIRouter, status

from console.api import writes
from console.api.deps import Conn, CurrentOperator, Svc
from console.api.models import ReclassifyRequest, ReviewRequest, Submitted

router = APIRouter(tags=["reviews"])


@router.post(
    "/reviews",
    response_model=Submitted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Approve, reject or override a recommendation",
    responses={
        401: {"description": "missing, invalid or revoked token"},
        403: {"description": "none of your roles may review this item or take this action"},
        404: {"description": "no such recommendation"},
        409: {"description": "the item is closed or expired, or the key was used otherwise"},
        422: {"description": "a field is invalid; `detail[].loc` names it"},
        503: {"description": "Kafka did not acknowledge; retry with the same key"},
    },
)
def submit_review(
    body: ReviewRequest, operator: CurrentOperator, svc: Svc, conn: Conn
) -> Submitted:
    """Produces one ReviewSubmitted (topic `reviews`, key = case_id) with your operator id
    and roles from the token. The approve processor re-checks it against the policy.
    The same `idempotency_key` again returns the same `review_id` and produces nothing."""
    return writes.submit_review(svc, conn, operator, body)


@router.post(
    "/cases/{case_id}/reclassify",
    response_model=Submitted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Correct a case's issue class",
    responses={
        401: {"description": "missing, invalid or revoked token"},
        403: {"description": "you hold no operator role of the policy in force"},
        404: {"description": "no such case"},
        409: {"description": "the key was used for another request"},
        503: {"description": "Kafka did not acknowledge; retry with the same key"},
    },
)
def reclassify(
    case_id: str, body: ReclassifyRequest, operator: CurrentOperator, svc: Svc, conn: Conn
) -> Submitted:
    """Produces one CaseReclassified with your operator id and roles from the token."""
    return writes.reclassify(svc, conn, operator, case_id, body)
