"""Signing in to the pages: a server-side session (console.auth.open_session) whose id is
in an HttpOnly, SameSite=Strict cookie, and a per-session form token every form must echo
back (CSRF)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, Request, Response

from console.api.deps import Conn, Svc
from console.api.service_errors import ConsoleError, Forbidden
from console.auth import Operator, close_session, form_token, open_session, session_operator
from infra.settings import Settings

COOKIE = "casegate_session"


class SignInRequired(ConsoleError):
    """No valid session: the pages answer with a redirect to the sign-in page."""

    status = 401


@dataclass(frozen=True, slots=True)
class WebSession:
    operator: Operator
    form_token: str
    session_id: str


def sign_in(conn: psycopg.Connection, response: Response, token: str, settings: Settings) -> bool:
    """Open a session for the holder of `token` and set its cookie; False if the token
    is not valid."""
    session = open_session(conn, token, settings.console_session_ttl_s)
    if session is None:
        return False
    response.set_cookie(
        COOKIE,
        session,
        max_age=int(settings.console_session_ttl_s),
        httponly=True,  # page scripts never see the session id
        samesite="strict",  # never sent on a request another site starts
        secure=settings.console_secure_cookie,
        path="/",
    )
    return True


def sign_out(conn: psycopg.Connection, response: Response, session: WebSession) -> None:
    close_session(conn, session.session_id)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def web_session(request: Request, conn: Conn, svc: Svc) -> WebSession:
    """The signed-in operator; checked against the database on every page, so a signed-out
    session, or a revoked or expired token, ends it at once."""
    session_id = request.cookies.get(COOKIE)
    operator = session_operator(conn, session_id) if session_id else None
    if operator is None or session_id is None:
        had_cookie = COOKIE in request.cookies
        raise SignInRequired(
            "your session ended or your token was revoked; sign in again" if had_cookie else ""
        )
    # A session is the token's use too: it lives only as long as the token does.
    svc.usage.used(conn, operator)
    return WebSession(operator, form_token(session_id), session_id)


def check_form(request: Request, session: WebSession, submitted: str) -> None:
    """Refuse a form post that did not come from one of our pages in this session."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("form posted from another site; refused")
    if not hmac.compare_digest(session.form_token, submitted or ""):
        raise Forbidden("this form has expired or was not issued to you; reload the page")


Session = Annotated[WebSession, Depends(web_session)]
