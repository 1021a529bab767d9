"""Given the chaos run's downstream server, a repeated Idempotency-Key is answered from
what the first call stored and not performed again; the same key with another body is
a conflict (one key must always mean one request)."""

from __future__ import annotations

import json
import urllib.request

from tests.downstream import Downstream


def post(url: str, key: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        f"{url}/plan",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def test_a_repeated_key_is_answered_from_the_store_and_performed_once() -> None:
    with Downstream() as downstream:
        first = post(downstream.url, "x1", {"params": {"plan": "pro"}})
        again = post(downstream.url, "x1", {"params": {"plan": "pro"}})
        other = post(downstream.url, "x2", {"params": {"plan": "enterprise"}})

        assert first == again == {"plan_active": True, "previous_plan": "pro"}
        assert other["plan_active"] is False
        assert (downstream.performed, downstream.repeats) == (2, 1)
        assert downstream.calls_per_key() == {"x1": 2, "x2": 1}
        assert downstream.conflicts == set()


def test_a_key_reused_with_another_body_is_a_conflict() -> None:
    with Downstream() as downstream:
        post(downstream.url, "x1", {"params": {"plan": "pro"}})
        post(downstream.url, "x1", {"params": {"plan": "basic"}})

        assert downstream.conflicts == {"x1"}
        assert downstream.performed == 1
