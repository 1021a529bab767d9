"""Operators and their bearer tokens: issue, look up, list and revoke; and the pages'
sign-in sessions.

A token is 32 random bytes (URL-safe text). Only its sha256 is stored: with that much
entropy a slow password hash buys nothing, and a fast one keeps every request's lookup
cheap. Revocation and expiry are columns checked on every lookup, so they take effect at
once. Signing in to the pages exchanges the token for a session of its own (same form,
shorter life), so the cookie never holds the long-lived token and signing out can revoke
exactly that session.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import LiteralString

import psycopg

TOKEN_BYTES = 32
OPERATOR_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is calling: the name written into events as the actor, and the roles held."""

    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    name: str
    roles: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime


class OperatorError(ValueError):
    """An operator command cannot be carried out (unknown name, bad role, duplicate…)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _digest(secret: str) -> str | None:
    """The stored form of a token or session id; None for what cannot be one."""
    return token_sha256(secret) if secret and len(secret) <= 256 else None


def _holder(conn: psycopg.Connection, secret: str, query: LiteralString) -> Operator | None:
    """The operator `query` finds for the digest of `secret` (its one parameter), whose
    rows are (name, roles, the digest matched)."""
    digest = _digest(secret)
    if digest is None:
        return None
    row = conn.execute(query, (digest,)).fetchone()
    # The index lookup already matched; the constant-time compare keeps the final decision
    # free of a data-dependent early exit, whatever the database's comparison does.
    if row is None or not hmac.compare_digest(row[2], digest):
        return None
    return Operator(name=row[0], roles=tuple(row[1]))


def authenticate(conn: psycopg.Connection, token: str) -> Operator | None:
    """The operator holding `token`, or None (unknown, malformed, expired or revoked)."""
    return _holder(
        conn,
        token,
        "SELECT name, roles, token_sha256 FROM operators "
        "WHERE token_sha256 = %s AND revoked_at IS NULL AND token_expires_at > now()",
    )


# A token's last use is kept to the minute: enough for an access review, and it keeps
# authentication a read on all but one request a minute per operator.
LAST_USE_RESOLUTION_S = 60.0


@dataclass
class UsageRecorder:
    """Writes `operators.last_used_at` at most once per `resolution_s` per operator and
    process (and the database skips the write when another process did it lately)."""

    resolution_s: float = LAST_USE_RESOLUTION_S
    clock: Callable[[], float] = time.monotonic
    _written: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def used(self, conn: psycopg.Connection, operator: Operator) -> bool:
        """Note that `operator` just authenticated; True when this call wrote it."""
        now = self.clock()
        with self._lock:
            last = self._written.get(operator.name)
            if last is not None and now - last < self.resolution_s:
                return False
            self._written[operator.name] = now
        with conn.transaction():
            conn.execute(
                "UPDATE operators SET last_used_at = now() WHERE name = %s "
                "AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s))",
                (operator.name, self.resolution_s),
            )
        return True


def open_session(conn: psycopg.Connection, token: str, ttl_s: float) -> str | None:
    """A new page session for the holder of `token` (None if the token is not valid);
    it ends after `ttl_s`, on sign-out, or when its operator's token stops being valid."""
    operator = authenticate(conn, token)
    if operator is None:
        return None
    session = new_token()
    with conn.transaction():
        conn.execute(
            "INSERT INTO console_sessions (session_sha256, operator, expires_at) "
            "VALUES (%s, %s, now() + make_interval(secs => %s))",
            (token_sha256(session), operator.name, ttl_s),
        )
    return session


def session_operator(conn: psycopg.Connection, session: str) -> Operator | None:
    """The operator of a live session: neither it nor its operator's token ended."""
    return _holder(
        conn,
        session,
        "SELECT o.name, o.roles, s.session_sha256 FROM console_sessions s "
        "JOIN operators o ON o.name = s.operator "
        "WHERE s.session_sha256 = %s AND s.revoked_at IS NULL AND s.expires_at > now() "
        "AND o.revoked_at IS NULL AND o.token_expires_at > now()",
    )


def close_session(conn: psycopg.Connection, session: str) -> None:
    """Sign-out: the session's cookie, even if copied, no longer signs anyone in."""
    digest = _digest(session)
    if digest is None:
        return
    with conn.transaction():
        conn.execute(
            "UPDATE console_sessions SET revoked_at = now() "
            "WHERE session_sha256 = %s AND revoked_at IS NULL",
            (digest,),
        )


def form_token(session: str) -> str:
    """The per-session value web forms must echo back (CSRF): keyed by the session's own
    secret id, so it needs no more server-side state and cannot be computed without it."""
    return hmac.new(session.encode("utf-8"), b"casegate.console.form", hashlib.sha256).hexdigest()


def add_operator(
    conn: psycopg.Connection,
    name: str,
    roles: tuple[str, ...],
    known_roles: tuple[str, ...] | None,
    ttl_s: float,
) -> str:
    """Create operator `name` with `roles`; returns the new token (shown once, never
    stored), valid for `ttl_s`.

    Re-adding a revoked or expired operator issues a fresh token; an active one is refused
    (revoke it first), so a typo cannot silently replace someone's working token.
    """
    if not OPERATOR_NAME.match(name):
        raise OperatorError(
            f"operator name {name!r} must be lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter (at most 64 characters)"
        )
    if not roles:
        raise OperatorError("give at least one role with --roles")
    bad = [r for r in roles if not ROLE_NAME.match(r)]
    if bad:
        raise OperatorError(f"malformed role name(s): {', '.join(bad)}")
    if known_roles is not None:
        unknown = [r for r in roles if r not in known_roles]
        if unknown:
            raise OperatorError(
                f"unknown role(s) {', '.join(unknown)}; the policy in force defines "
                f"{', '.join(known_roles)}"
            )
    token = new_token()
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO operators (name, token_sha256, roles, token_expires_at) "
            "VALUES (%s, %s, %s, now() + make_interval(secs => %s)) "
            "ON CONFLICT (name) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256, "
            "roles = EXCLUDED.roles, created_at = now(), revoked_at = NULL, "
            "token_expires_at = EXCLUDED.token_expires_at "
            "WHERE operators.revoked_at IS NOT NULL OR operators.token_expires_at <= now() "
            "RETURNING name",
            (name, token_sha256(token), list(dict.fromkeys(roles)), ttl_s),
        ).fetchone()
    if row is None:
        raise OperatorError(
            f"operator {name!r} already exists; `casegate operators revoke {name}` first "
            "to issue a new token"
        )
    return token


def list_operators(conn: psycopg.Connection) -> list[OperatorRecord]:
    rows = conn.execute(
        "SELECT name, roles, created_at, revoked_at, token_expires_at FROM operators ORDER BY name"
    ).fetchall()
    return [OperatorRecord(r[0], tuple(r[1]), r[2], r[3], r[4]) for r in rows]


def revoke_operator(conn: psycopg.Connection, name: str) -> None:
    """Revoke `name`'s token; every request made with it fails from now on, and their page
    sessions end (also if they are re-added later)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE operators SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL "
            "RETURNING name",
            (name,),
        ).fetchone()
        conn.execute(
            "UPDATE console_sessions SET revoked_at = now() "
            "WHERE operator = %s AND revoked_at IS NULL",
            (name,),
        )
    if row is None:
        raise OperatorError(f"no active operator named {name!r}")
