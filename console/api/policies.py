"""The policy in force: the newest published one (policy_versions), parsed once per sha256."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import psycopg

from policy.loader import LoadedPolicy, load_policy_text


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    loaded: LoadedPolicy
    author: str
    published_at: datetime


class PolicyCache:
    """Parses a published document only when its sha256 changes (parsing YAML and
    validating it on every request would dominate the console's response time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: PolicyInForce | None = None

    def get(self, conn: psycopg.Connection) -> PolicyInForce | None:
        head = conn.execute(
            "SELECT version, sha256, author, published_at FROM policy_versions "
            "ORDER BY published_at DESC, version DESC LIMIT 1"
        ).fetchone()
        if head is None:
            return None
        with self._lock:
            current = self._current
        if current is not None and current.loaded.sha256 == head[1]:
            return current
        row = conn.execute(
            "SELECT document FROM policy_versions WHERE version = %s", (head[0],)
        ).fetchone()
        if row is None:  # replaced between the two statements; the next call catches up
            return current
        fresh = PolicyInForce(load_policy_text(row[0]), author=head[2], published_at=head[3])
        with self._lock:
            self._current = fresh
        return fresh
