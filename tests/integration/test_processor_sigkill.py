"""Issue 4 (h): each processor killed with SIGKILL mid-stream and restarted neither loses
nor doubles a decision, a review or an execution.

A few thousand hand-made cases flow through guard → approve → execute against a real
HTTP downstream; a feeder plays the operators, approving what the guard sends to the
queue. Delivery is exactly-once into the topics (Kafka transactions) with deterministic
event ids besides: after the kills, every recommendation has exactly one decision id (any
repeat byte-identical), every approved or automatic action exactly one execution id, and
the downstream saw each idempotency key with exactly one body (a run whose outcome did
not commit is repeated with the same key).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import (
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionSucceeded,
    GuardrailDecided,
    ReviewRecorded,
)
from tests.integration.approval_flow import (
    CASES,
    EXECUTED,
    Operators,
    Worker,
    all_recommendations,
    assert_exactly_once,
    publish_cases,
    publish_flow_policy,
    settle,
    stopped_after,
)
from tests.integration.helpers import OUTPUT
from tests.integration.pipeline import Downstream, Tail


@pytest.fixture
def workers(settings: Settings) -> Iterator[dict[str, Worker]]:
    with stopped_after({n: Worker(settings, n) for n in ("guard", "approve", "execute")}) as procs:
        yield procs


def test_h_sigkill_of_each_processor_loses_and_doubles_nothing(
    settings: Settings, workers: dict[str, Worker]
) -> None:
    codec = Codec.load()
    started = time.monotonic()
    with Downstream() as downstream:
        publish_flow_policy(settings, codec, downstream)
        recs = all_recommendations()
        publish_cases(settings, codec, recs)

        out = Tail(settings, ("decisions", "executions"))
        operators = Operators(settings, codec)
        for w in workers.values():
            w.start()
        operators.start()

        def distinct(kind: type[Event]) -> int:
            for w in workers.values():  # checked on every poll, as a supervisor would
                w.revive()
            return len({r.event.event_id for r in out.records if isinstance(r.event, kind)})

        # Each kill must land mid-stream: some of its outputs out, not all.
        kills: dict[str, int] = {}
        for name, kind, total in (
            ("guard", GuardrailDecided, CASES),
            ("approve", ExecutionRequested, EXECUTED),
            ("execute", ExecutionSucceeded, EXECUTED),
        ):
            out.wait(
                lambda kind=kind, total=total: distinct(kind) >= total // 4,
                timeout_s=90,
                what=f"{name} to get a quarter through the stream",
            )
            workers[name].kill()
            out.poll(0.5)
            kills[name] = distinct(kind)
            assert kills[name] < total, f"{name} finished before the kill; nothing was proven"
            workers[name].start()

        out.wait(
            lambda: (
                distinct(GuardrailDecided) >= CASES
                and distinct(ExecutionSucceeded) + distinct(ExecutionFailed) >= EXECUTED
            ),
            timeout_s=150,
            what=lambda: (
                f"every decision and execution after the restarts; have "
                f"{distinct(GuardrailDecided)}/{CASES} decisions, "
                f"{distinct(ReviewRecorded)} reviews recorded of "
                f"{len(operators.reviewed)} items reviewed, "
                f"{distinct(ExecutionRequested)}/{EXECUTED} requests, "
                f"{distinct(ExecutionSucceeded)} succeeded, "
                f"{distinct(ExecutionFailed)} failed"
            ),
        )
        calls = settle(settings, operators, out, downstream)
    out.close()
    records = out.records
    elapsed = time.monotonic() - started

    execution_ids, keys = assert_exactly_once(records, recs, out, calls)

    repeats = {
        kind.__name__: sum(isinstance(r.event, kind) for r in records) - distinct(kind)
        for kind in (GuardrailDecided, ExecutionRequested, ExecutionSucceeded)
    }
    restarts = {name: w.crashes for name, w in workers.items()}
    print(
        f"\n(h) {CASES} cases, {len(execution_ids)} executions in {elapsed:.0f}s; killed at "
        f"{kills}; redelivered duplicates {repeats}; downstream calls {len(calls)} for "
        f"{keys} keys; restarts after stopping by themselves {restarts}"
    )
    Path(OUTPUT / f"{settings.topic_prefix}sigkill-summary.txt").write_text(
        f"kills={kills} repeats={repeats} calls={len(calls)} keys={keys} self-stops={restarts}\n"
    )
