"""A processor SIGKILLed inside an open Kafka transaction: nothing of that transaction is
ever seen by a read-committed reader, neither its events nor its state, and the worker that
takes over decides the whole batch again, once.

The transaction is held open on purpose (`CASEGATE_TXN_HOLD_MS`, fault injection), so the
kill lands inside it every time. The guard's blast-radius counter is the state under test:
with 6 partitions and `max_auto_runs: 6`, each partition may authorize exactly one
automatic run per hour, and the redone batch must authorize exactly those six again. (A
run the aborted batch recorded would not block its own redo either way: the counter never
counts a recommendation's own earlier run; that is what makes a redo safe.)
"""

from __future__ import annotations

import signal
from collections import Counter

from console.policy_topic import publish_policy
from policy.loader import load_policy_text
from schemas.codec import Codec
from schemas.events import ActionSpec, GuardrailDecided
from tests.integration.helpers import spawn
from tests.integration.pipeline import Downstream, Tail, policy_text, recommendation, send
from tests.stack import Stack

RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
CASES = 120


def test_a_kill_inside_a_transaction_leaves_nothing_of_it(stack: Stack) -> None:
    held = stack.isolated(txn_hold_ms=5_000.0)
    codec = Codec.load()
    with Downstream() as downstream:
        policy = policy_text(downstream.url, bounded_limit=6)
    publish_policy(held, codec, load_policy_text(policy), "tests")
    recs = [recommendation(f"t-{i:03d}", RESET, queue="identity") for i in range(CASES)]
    send(held, codec, recs)

    committed = Tail(held, ("decisions",))
    uncommitted = Tail(held, ("decisions",), isolation="read_uncommitted")
    worker = spawn(held, "processors.worker", "guard", "guard-held")
    try:
        uncommitted.wait(
            lambda: len(uncommitted.records) >= 1, timeout_s=60, what="an open transaction"
        )
        committed.poll(1.0)
        assert committed.records == [], "the transaction is held open: nothing committed yet"
        worker.send_signal(signal.SIGKILL)  # inside the transaction
        worker.wait(10)
        seen_in_doomed = len(uncommitted.records)

        after = held.model_copy(update={"txn_hold_ms": 0.0})
        worker = spawn(after, "processors.worker", "guard", "guard-after")
        committed.wait(
            lambda: len({r.event.event_id for r in committed.records}) >= CASES,
            timeout_s=90,
            what="every decision after the restart",
        )
        committed.poll(1.0)
        uncommitted.poll(1.0)
    finally:
        worker.terminate()
        worker.wait(30)
        committed.close()
        uncommitted.close()

    decisions = [r.event for r in committed.records]
    assert all(isinstance(d, GuardrailDecided) for d in decisions)
    # Exactly one committed record per recommendation, the aborted copies never among them.
    assert sorted(d.recommendation_id for d in decisions) == sorted(  # type: ignore[attr-defined]
        r.recommendation_id for r in recs
    )
    assert seen_in_doomed > 0
    assert len(uncommitted.records) >= CASES + seen_in_doomed  # the aborted ones were real
    # The state the aborted transaction wrote was never restored: one run per partition.
    outcomes = Counter(d.outcome for d in decisions)  # type: ignore[attr-defined]
    assert outcomes == {"auto_authorized": 6, "approval_required": CASES - 6}, outcomes
