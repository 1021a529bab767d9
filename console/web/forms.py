"""The pages' form posts: sign in and out, review, reclassify.

Every post that changes something carries the session's form token and goes through the
same service functions as the API, so the pages can do nothing the API would refuse.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.responses import Response

from console.api import writes
from console.api.deps import Conn, Svc
from console.api.models import ReclassifyRequest, ReviewRequest, Submitted
from console.api.rollout import approve_proposal, pull_kill_switch
from console.api.service_errors import ConsoleError, Forbidden, Invalid
from console.web.pages import review_page, rollout_page, trace_page
from console.web.render import render, trace_url
from console.web.session import Session, WebSession, check_form, sign_in, sign_out

router = APIRouter(include_in_schema=False)


def posted_session(request: Request, session: Session, form_token: str = Form("")) -> WebSession:
    """The session of a form post that carries its form token (refused otherwise): resolved
    before the handler runs, so a refused post changes nothing."""
    check_form(request, session, form_token)
    return session


# The session of a post that changes something: every such form carries the form token.
FormSession = Annotated[WebSession, Depends(posted_session)]


def to_trace(result: Submitted) -> Response:
    """After a recorded review or reclassification: its case's trace, naming the review."""
    return RedirectResponse(
        f"{trace_url(result.case_id)}?submitted={result.review_id}", status_code=303
    )


@router.get("/sign-in")
def sign_in_page(request: Request, ended: bool = False) -> Response:
    error = "Your session ended or your token was revoked; sign in again." if ended else None
    return render(request, "sign_in.html", session=None, error=error)


@router.post("/sign-in")
def sign_in_post(request: Request, svc: Svc, conn: Conn, token: str = Form("")) -> Response:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("sign-in posted from another site; refused")
    response = RedirectResponse("/queue", status_code=303)
    if not sign_in(conn, response, token.strip(), svc.settings):
        return render(
            request,
            "sign_in.html",
            status=401,
            session=None,
            error="That token is not valid, has expired or has been revoked.",
        )
    return response


@router.post("/sign-out")
def sign_out_post(session: FormSession, conn: Conn) -> Response:
    response = RedirectResponse("/sign-in", status_code=303)
    sign_out(conn, response, session)
    return response


def _validated(model: type[ReviewRequest] | type[ReclassifyRequest], data: dict[str, Any]) -> Any:
    """The request model, or Invalid naming each form field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid([(("form", *map(str, e["loc"])), e["msg"]) for e in exc.errors()]) from None


@router.post("/queue/{recommendation_id}/review")
def review_post(
    recommendation_id: str,
    request: Request,
    session: FormSession,
    svc: Svc,
    conn: Conn,
    idempotency_key: str = Form(""),
    verdict: str = Form(""),
    reason: str = Form(""),
    override_action: str = Form(""),
    override_params: str = Form(""),
    params_hash: str = Form(""),
    policy_version: str = Form(""),
) -> Response:
    try:
        override = None
        if verdict == "override":
            try:
                params = json.loads(override_params) if override_params.strip() else {}
            except ValueError as exc:
                raise Invalid([(("form", "override_params"), f"not valid JSON: {exc}")]) from None
            override = {"action": override_action, "params": params}
        body = _validated(
            ReviewRequest,
            {
                "recommendation_id": recommendation_id,
                "verdict": verdict,
                "reason": reason.strip() or None,
                "override": override,
                "idempotency_key": idempotency_key,
                # What the page showed: the review is bound to it.
                "params_hash": params_hash or None,
                "policy_version": policy_version or None,
            },
        )
        result = writes.submit_review(svc, conn, session.operator, body)
    except ConsoleError as exc:
        return review_page(request, session, svc, conn, recommendation_id, error=exc)
    return to_trace(result)


@router.post("/cases/{case_id}/reclassify")
def reclassify_post(
    case_id: str,
    request: Request,
    session: FormSession,
    svc: Svc,
    conn: Conn,
    idempotency_key: str = Form(""),
    category: str = Form(""),
    reason: str = Form(""),
) -> Response:
    try:
        body = _validated(
            ReclassifyRequest,
            {"category": category.strip(), "reason": reason, "idempotency_key": idempotency_key},
        )
        result = writes.reclassify(svc, conn, session.operator, case_id, body)
    except ConsoleError as exc:
        return trace_page(request, session, conn, case_id, error=exc)
    return to_trace(result)


@router.post("/rollout/proposals/{proposal_id}/approve")
def rollout_approve_post(
    proposal_id: str,
    request: Request,
    session: FormSession,
    svc: Svc,
    conn: Conn,
) -> Response:
    try:
        approve_proposal(svc, conn, session.operator, proposal_id, "console")
    except ConsoleError as exc:
        return rollout_page(request, session, svc, conn, error=exc)
    return RedirectResponse(f"/rollout?sent=approval+of+{proposal_id}", status_code=303)


@router.post("/rollout/workflows/{workflow}/kill")
def rollout_kill_post(
    workflow: str,
    request: Request,
    session: FormSession,
    svc: Svc,
    conn: Conn,
    idempotency_key: str = Form(""),
    reason: str = Form(""),
) -> Response:
    try:
        pull_kill_switch(
            svc, conn, session.operator, workflow, reason.strip(), "console", idempotency_key
        )
    except ConsoleError as exc:
        return rollout_page(request, session, svc, conn, error=exc)
    return RedirectResponse(f"/rollout?sent=kill+switch+of+{workflow}", status_code=303)
