"""Signing in to the pages: the operator's token in an HttpOnly, SameSite=Strict cookie,
and a per-session form token every form must echo back (CSRF)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, Request, Response

from console.api.deps import Conn
from console.api.errors import ConsoleError, Forbidden
from console.auth import Operator, authenticate, form_token
from infra.settings import Settings

COOKIE = "casegate_session"


class SignInRequired(ConsoleError):
    """No valid session: the pages answer with a redirect to the sign-in page."""

    status = 401


@dataclass(frozen=True, slots=True)
class WebSession:
    operator: Operator
    form_token: str
    token: str


def sign_in(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,  # page scripts never see the token
        samesite="strict",  # never sent on a request another site starts
        secure=settings.console_secure_cookie,
        path="/",
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def session_of(conn: psycopg.Connection, token: str | None) -> WebSession | None:
    if not token:
        return None
    operator = authenticate(conn, token)
    if operator is None:
        return None
    return WebSession(operator, form_token(token), token)


def web_session(request: Request, conn: Conn) -> WebSession:
    """The signed-in operator; checked against the database on every page, so a revoked
    token ends the session at once."""
    session = session_of(conn, request.cookies.get(COOKIE))
    if session is None:
        had_cookie = COOKIE in request.cookies
        raise SignInRequired(
            "your token is invalid or was revoked; sign in again" if had_cookie else ""
        )
    return session


def check_form(request: Request, session: WebSession, submitted: str) -> None:
    """Refuse a form post that did not come from one of our pages in this session."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("form posted from another site; refused")
    if not hmac.compare_digest(session.form_token, submitted or ""):
        raise Forbidden("this form has expired or was not issued to you; reload the page")


Session = Annotated[WebSession, Depends(web_session)]
