"""A downstream system for the http adapter: a real HTTP server on 127.0.0.1 that records
every call and honours the `Idempotency-Key` header the executor sends.

Shared by the processor integration tests and the chaos harness (one implementation).
The executor runs an action again with the same key when it was killed between the call
and the durable outcome; a downstream that honours the key performs the action once and
answers the repeat from what it stored. `performed` counts the actions really carried out,
`repeats` the calls answered from the store, and `conflicts` the keys that came back with
a different body (a bug in the caller: one key must always mean one request).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    path: str
    key: str | None  # the Idempotency-Key header
    body: dict[str, Any]
    raw: bytes


class Downstream:
    """Paths: `/ok` answers {"done": true}; `/slow` answers after 3 s; `/plan` plays a plan
    change whose switch to "enterprise" does not hold (plan_active false).

    `extra[case_id]` adds fields to every answer for that case: a test's odd reply (an
    integer past 64 bits, say)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.extra: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[bytes, dict[str, Any]]] = {}  # key -> (body, answer)
        self._conflicts: set[str] = set()
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                call = Call(self.path, self.headers.get("Idempotency-Key"), body, raw)
                payload = json.dumps(downstream._handle(call)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, call: Call) -> dict[str, Any]:
        with self._lock:
            self.calls.append(call)
            stored = self._answers.get(call.key) if call.key else None
        if stored is not None:
            if stored[0] != call.raw:
                with self._lock:
                    self._conflicts.add(call.key or "")
            return stored[1]
        extra = self.extra.get(call.body.get("case_id"), {})
        answer = {**self.answer(call.path, call.body), **extra}
        if call.key:
            with self._lock:
                # Two concurrent first calls with one key: the first stored answer wins.
                answer = self._answers.setdefault(call.key, (call.raw, answer))[1]
        return answer

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/slow":
            time.sleep(3)
            return {"done": True}
        if path == "/plan":
            plan = body.get("params", {}).get("plan")
            if plan == "enterprise":
                return {"plan_active": False, "previous_plan": "basic"}
            return {"plan_active": True, "previous_plan": "pro"}
        return {"done": True}

    def calls_for(self, case_id: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.body.get("case_id") == case_id]

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    @property
    def performed(self) -> int:
        """Actions carried out: one per distinct idempotency key (calls without a key each)."""
        with self._lock:
            return len(self._answers) + sum(1 for c in self.calls if not c.key)

    @property
    def repeats(self) -> int:
        """Calls answered from the store because their key had been performed already."""
        with self._lock:
            return len(self.calls) - len(self._answers) - sum(1 for c in self.calls if not c.key)

    @property
    def conflicts(self) -> set[str]:
        with self._lock:
            return set(self._conflicts)

    def calls_per_key(self) -> Counter[str | None]:
        with self._lock:
            return Counter(c.key for c in self.calls)

    def __enter__(self) -> Downstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
