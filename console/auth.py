"""Operators and their bearer tokens: issue, look up, list and revoke.

A token is 32 random bytes (URL-safe text). Only its sha256 is stored: with that much
entropy a slow password hash buys nothing, and a fast one keeps every request's lookup
cheap. Revocation is a column checked on every lookup, so it takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

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


class OperatorError(ValueError):
    """An operator command cannot be carried out (unknown name, bad role, duplicate…)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(conn: psycopg.Connection, token: str) -> Operator | None:
    """The active operator holding `token`, or None (unknown, malformed or revoked)."""
    if not token or len(token) > 256:
        return None
    digest = token_sha256(token)
    row = conn.execute(
        "SELECT name, roles, token_sha256 FROM operators "
        "WHERE token_sha256 = %s AND revoked_at IS NULL",
        (digest,),
    ).fetchone()
    # The index lookup already matched; the constant-time compare keeps the final decision
    # free of a data-dependent early exit, whatever the database's comparison does.
    if row is None or not hmac.compare_digest(row[2], digest):
        return None
    return Operator(name=row[0], roles=tuple(row[1]))


def form_token(token: str) -> str:
    """The per-session value web forms must echo back (CSRF): keyed by the session's own
    secret token, so it needs no server-side state and cannot be computed without it."""
    return hmac.new(token.encode("utf-8"), b"casegate.console.form", hashlib.sha256).hexdigest()


def add_operator(
    conn: psycopg.Connection, name: str, roles: tuple[str, ...], known_roles: tuple[str, ...] | None
) -> str:
    """Create operator `name` with `roles`; returns the new token (shown once, never stored).

    Re-adding a revoked operator issues a fresh token; an active one is refused (revoke it
    first), so a typo cannot silently replace someone's working token.
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
            "INSERT INTO operators (name, token_sha256, roles) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256, "
            "roles = EXCLUDED.roles, created_at = now(), revoked_at = NULL "
            "WHERE operators.revoked_at IS NOT NULL RETURNING name",
            (name, token_sha256(token), list(dict.fromkeys(roles))),
        ).fetchone()
    if row is None:
        raise OperatorError(
            f"operator {name!r} already exists; `casegate operators revoke {name}` first "
            "to issue a new token"
        )
    return token


def list_operators(conn: psycopg.Connection) -> list[OperatorRecord]:
    rows = conn.execute(
        "SELECT name, roles, created_at, revoked_at FROM operators ORDER BY name"
    ).fetchall()
    return [OperatorRecord(r[0], tuple(r[1]), r[2], r[3]) for r in rows]


def revoke_operator(conn: psycopg.Connection, name: str) -> None:
    """Revoke `name`'s token; every request made with it fails from now on."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE operators SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL "
            "RETURNING name",
            (name,),
        ).fetchone()
    if row is None:
        raise OperatorError(f"no active operator named {name!r}")
