"""The approval flow the processor fault tests drive: a few thousand hand-made cases
through guard → approve → execute against a real HTTP downstream, operators approving
what reaches the queue, and the checks that nothing was lost or done twice.

Delivery is exactly-once into the topics (Kafka transactions) with deterministic event
ids besides: every recommendation has exactly one decision id (any repeat byte-identical),
every approved or automatic action exactly one execution id, and the downstream saw each
idempotency key with exactly one body (a run whose outcome did not commit is repeated with
the same key).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TypeVar

from confluent_kafka import Producer

from console.policy_topic import publish_policy
from infra.kafka import producer_config
from infra.settings import Settings
from policy.loader import load_policy_text
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionSucceeded,
    GuardrailDecided,
    RecommendationProduced,
    ReviewDenied,
    ReviewRecorded,
)
from tests.downstream import Call
from tests.integration.helpers import OUTPUT, spawn, stop_all
from tests.integration.pipeline import (
    Downstream,
    Record,
    Tail,
    approvals_settled,
    case_opened,
    policy_text,
    recommendation,
    review,
    send,
)

CASES = 2400
# Case i's scenario by i % 4: queue, action, expected outcome, approvers.
SCENARIOS: tuple[tuple[str, ActionSpec | None, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "identity",
        ActionSpec(name="reset_password", params={"method": "email_link"}),
        "auto_authorized",
        (),
    ),
    (
        "billing",
        ActionSpec(name="change_plan", params={"plan": "pro"}),
        "approval_required",
        (("sam", "supervisor"),),
    ),
    (
        "billing",
        ActionSpec(name="refund_payment", params={"amount": 20.0, "order_id": "ORD-1"}),
        "approval_required",
        (("alice", "supervisor"), ("bob", "finance_lead")),
    ),
    ("shadowq", ActionSpec(name="reset_password", params={"method": "email_link"}), "shadowed", ()),
)
EXECUTED = sum(1 for i in range(CASES) if SCENARIOS[i % 4][2] != "shadowed")


def scenario(rec_id: str) -> tuple[str, ActionSpec | None, str, tuple[tuple[str, str], ...]]:
    return SCENARIOS[int(rec_id.split("-")[2]) % 4]  # rec-case-00042-1


class Worker:
    """One processor process that the test can kill and start again. Like `casegate
    run`'s supervisor, `revive` starts it again when it stopped by itself (a processor
    stops on purpose when it cannot go on safely, e.g. when a newer instance fenced it)."""

    def __init__(self, settings: Settings, name: str, instance: int = 0) -> None:
        self.settings, self.name, self.runs, self.crashes = settings, name, 0, 0
        self.instance = instance
        self.proc: subprocess.Popen[bytes] | None = None

    def revive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.crashes += 1
            if self.crashes > 10:
                raise AssertionError(f"{self.name} keeps stopping; see its logs in {OUTPUT}")
            self.start()

    def start(self) -> None:
        self.runs += 1
        self.proc = spawn(
            self.settings,
            "processors.worker",
            self.name,
            f"{self.name}-{self.instance}-{self.runs}",
            "--instance",
            str(self.instance),
        )

    def kill(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)  # no chance to commit or flush anything
            self.proc.wait(10)
            self.proc = None  # killed by the test, not stopped by itself: no revival

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_all((self.proc,))


K = TypeVar("K")


@contextlib.contextmanager
def stopped_after(workers: dict[K, Worker]) -> Iterator[dict[K, Worker]]:
    """`workers`, each stopped afterwards (those never started or already dead are skipped)."""
    try:
        yield workers
    finally:
        for w in workers.values():
            w.stop()


class Operators(threading.Thread):
    """Approves every item the guard sends to the queue, as the scenario says."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        super().__init__(daemon=True)
        self.settings, self.codec = settings, codec
        self.stop = threading.Event()
        self.reviewed: set[str] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        tail = Tail(self.settings, ("decisions",))
        producer = Producer(producer_config(self.settings))
        try:
            while not self.stop.is_set():
                tail.poll(0.2)
                for d in tail.events(GuardrailDecided, outcome="approval_required"):
                    if d.recommendation_id in self.reviewed:
                        continue
                    self.reviewed.add(d.recommendation_id)
                    rec = recommendation(d.case_id, d.action)
                    reviews = [
                        review(rec, actor, (role,))
                        for actor, role in scenario(d.recommendation_id)[3]
                    ]
                    send(self.settings, self.codec, list(reviews), producer=producer)
                producer.poll(0)
                tail.records.clear()
            producer.flush(30)
        except BaseException as exc:
            self.error = exc
        finally:
            tail.close()


def publish_flow_policy(settings: Settings, codec: Codec, downstream: Downstream) -> None:
    """The default policy aimed at `downstream`, its bounded limit high enough that no
    scenario's refund is held back by it."""
    publish_policy(
        settings,
        codec,
        load_policy_text(policy_text(downstream.url, bounded_limit=600_000)),
        "tests",
    )


def settle(
    settings: Settings, operators: Operators, out: Tail, downstream: Downstream
) -> list[Call]:
    """Once every output is out: stop the operators, wait until approve and execute have
    committed all they read, and return what the downstream was called with."""
    operators.stop.set()
    operators.join(30)
    assert operators.error is None, operators.error
    approvals_settled(settings, out, timeout_s=60)
    return downstream.snapshot()


def by_id(
    records: list[Record], kind: type[Event], key: Callable[[Event], str]
) -> dict[str, dict[str, set[bytes]]]:
    """key -> event_id -> the distinct encodings seen of it."""
    out: dict[str, dict[str, set[bytes]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        if isinstance(r.event, kind):
            out[key(r.event)][r.event.event_id].add(r.value)
    return out


def all_recommendations() -> list[RecommendationProduced]:
    return [
        recommendation(f"case-{i:05d}", SCENARIOS[i % 4][1], queue=SCENARIOS[i % 4][0])
        for i in range(CASES)
    ]


def publish_cases(
    settings: Settings, codec: Codec, recs: list[RecommendationProduced], per_second: float = 0.0
) -> None:
    """Each case's CaseOpened and recommendation; at `per_second` cases a second (0: all
    at once, before any worker starts)."""
    producer = Producer(producer_config(settings))
    started = time.monotonic()
    for i, rec in enumerate(recs):
        if per_second and i % 50 == 0:
            time.sleep(max(0.0, started + i / per_second - time.monotonic()))
            producer.flush(10)
        queue = SCENARIOS[i % 4][0]
        send(settings, codec, [case_opened(rec.case_id, queue), rec], producer=producer)
    producer.flush(60)


def assert_exactly_once(
    records: list[Record], recs: list[RecommendationProduced], out: Tail, calls: list[Call]
) -> tuple[set[str], int]:
    """What the topics and the downstream must show after any faults; returns the
    execution ids and how many idempotency keys the downstream saw."""
    # Exactly one decision per recommendation; a redelivered one is byte-identical.
    decisions = by_id(records, GuardrailDecided, lambda e: e.recommendation_id)  # type: ignore[attr-defined]
    assert set(decisions) == {r.recommendation_id for r in recs}
    assert [k for k, ids in decisions.items() if len(ids) != 1] == []
    assert [k for k, ids in decisions.items() for v in ids.values() if len(v) != 1] == []
    outcomes = {d.recommendation_id: d.outcome for d in out.events(GuardrailDecided)}
    assert {k: v for k, v in outcomes.items() if v != scenario(k)[2]} == {}

    # One review record per review and one completion per approval.
    for kind, key in ((ReviewRecorded, "review_id"), (ApprovalCompleted, "recommendation_id")):
        grouped = by_id(records, kind, lambda e, key=key: getattr(e, key))
        assert [k for k, ids in grouped.items() if len(ids) != 1] == [], kind.__name__
    assert out.events(ReviewDenied) == []
    approvals = sum(len(scenario(r.recommendation_id)[3]) for r in recs)
    assert len(by_id(records, ReviewRecorded, lambda e: e.review_id)) == approvals  # type: ignore[attr-defined]

    # At most one execution per approved or automatic action — here exactly one.
    requests = by_id(records, ExecutionRequested, lambda e: e.recommendation_id)  # type: ignore[attr-defined]
    expected = {r.recommendation_id for r in recs if scenario(r.recommendation_id)[2] != "shadowed"}
    assert set(requests) == expected
    assert [k for k, ids in requests.items() if len(ids) != 1] == []
    assert [k for k, ids in requests.items() for v in ids.values() if len(v) != 1] == []
    execution_ids = {e.execution_id for e in out.events(ExecutionRequested)}
    succeeded = by_id(records, ExecutionSucceeded, lambda e: e.execution_id)  # type: ignore[attr-defined]
    failed = [(f.execution_id, f.error_class, f.message) for f in out.events(ExecutionFailed)]
    assert failed == []
    assert set(succeeded) == execution_ids
    assert [k for k, ids in succeeded.items() if len(ids) != 1] == []

    # The downstream saw each idempotency key with one body, and every execution's key.
    bodies: dict[str | None, set[bytes]] = defaultdict(set)
    for call in calls:
        bodies[call.key].add(call.raw)
    assert set(bodies) == execution_ids
    assert [k for k, b in bodies.items() if len(b) != 1] == []
    return execution_ids, len(bodies)
