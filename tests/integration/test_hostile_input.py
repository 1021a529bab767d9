"""Hostile input against one real run of every processor and the read models: garbage,
mutated and truncated bytes, wrong headers and keys on every topic, and schema-valid but
wrong events (unknown cases, reviews of unknown, closed or expired items, replays, roles
without permission, self-approval, overrides to prohibited actions or out of bounds,
forged executions, an invalid policy, odd unicode, text past intake's cap).

Each ends as a dead letter from every consumer that reads it, as a ReviewDenied or a
refused execution with its reason, or, for odd but valid text under the cap, verbatim in
the read models; no consumer crashes or stalls, and a valid case sent after all of it is still
fully processed. The counts are printed and written to test-output/.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaError, Message, Producer

from console.policy_topic import publish_policy
from infra.db import database_urls
from infra.kafka import producer_config
from infra.keys import Revealer
from infra.sandbox import child_env
from infra.settings import Settings
from infra.topics import produced_to
from policy.loader import load_policy_text
from schemas.codec import EVENT_TYPE_HEADER, Codec, CodecError
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    CaseOpened,
    CaseReopened,
    CaseUpdated,
    DeadLettered,
    Event,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionSucceeded,
    GuardrailDecided,
    PolicyPublished,
    ReviewDenied,
    ReviewRecorded,
    ReviewSubmitted,
    record_key,
    review_binding,
)
from tests.chaos.check import Record, audit_verify, read_topics
from tests.chaos.faults import COMPONENTS, Component, Probe
from tests.downstream import Downstream
from tests.integration.helpers import OUTPUT
from tests.integration.pipeline import case_opened, policy_text, recommendation
from tests.stack import Stack

# Who reads each topic, and so must dead-letter what it cannot use there. Upstream
# writes the intake topic, which only intake reads; `cases` holds what intake accepted
# (garbage there means a client wrote it past intake); every processor that decides with
# a policy follows the policy topic itself.
READERS: dict[str, tuple[str, ...]] = {
    "upstream": ("intake",),
    "cases": ("recommend", "approve", "readmodels"),
    "recommendations": ("guard", "readmodels"),
    "decisions": ("approve", "readmodels"),
    "reviews": ("approve", "readmodels"),
    "executions": ("execute", "readmodels"),
    "policy": ("recommend", "guard", "approve", "execute", "readmodels"),
    "deadletter": ("readmodels",),
    "governance": ("readmodels",),
}
HTML = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
SQL = "x'); DROP TABLE audit_log; --"
ODD = "Zoë \u202egnp.exe\u202c \u200b\u200d\ufeff e\u0301\u0301 \U0001f4a5 \x00 \x1b[2J"
LONG = (ODD + HTML + SQL) * 200  # ~23k characters: odd, long, under intake's text cap
HUGE = (ODD + HTML + SQL) * 4000  # ~460k characters, past the cap (CASEGATE_MAX_TEXT_CHARS)
REFUND = ActionSpec(name="refund_payment", params={"amount": 20.0, "order_id": "ORD-1"})
PLAN = ActionSpec(name="change_plan", params={"plan": "pro"})
RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
SWITCH = ActionSpec(name="switch_plan", params={"plan": "pro"})  # ops_wf runs it alone
# The approval items the wrong reviews aim at, with the action each item shows.
ITEMS = {
    "h-done": PLAN,
    "h-role": REFUND,
    "h-self": REFUND,
    "h-prohib": PLAN,
    "h-bounds": PLAN,
    "h-verdict": PLAN,
    "h-odd": PLAN,
}


@dataclass(frozen=True)
class Sent:
    label: str
    topic: str  # logical name
    partition: int
    offset: int


@dataclass
class Sender:
    """Produces raw records or events and remembers where each landed."""

    settings: Settings
    codec: Codec
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._producer = Producer(producer_config(self.settings))
        self._failed: list[str] = []

    def raw(
        self,
        label: str,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> None:
        def landed(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._failed.append(f"{label}: {err.str()}")
            else:
                self.sent.append(Sent(label, topic, msg.partition() or 0, msg.offset() or 0))

        wire: list[Any] = list(headers or [])
        self._producer.produce(
            self.settings.topic(topic), key=key, value=value, headers=wire, on_delivery=landed
        )

    def event(
        self, label: str, event: Event, topic: str | None = None, key: str | None = None
    ) -> None:
        value, headers = self.codec.encode(event)
        self.raw(
            label,
            topic or produced_to(event),
            key.encode() if key is not None else record_key(event),
            value,
            list(headers),
        )

    def flush(self) -> None:
        assert self._producer.flush(30) == 0 and not self._failed, self._failed

    def where(self, label: str) -> Sent:
        [found] = [s for s in self.sent if s.label == label]
        return found


def review(
    case: str,
    actor: str,
    role: str,
    verdict: str = "approve",
    n: int = 1,
    override: ActionSpec | None = None,
    reason: str | None = None,
    rec: str | None = None,
) -> ReviewSubmitted:
    """A review as the console would submit it: bound to the item's action (unknown
    cases: a plan change) under the policy the tests publish, so each wrong review is
    refused for what the test names, not for being unbound."""
    review_id = f"review-{case}-{actor}-{n}"
    return ReviewSubmitted(
        event_id=f"event-{review_id}",
        case_id=case,
        occurred_at=datetime.now(UTC),
        correlation_id=f"opened-{case}",
        review_id=review_id,
        recommendation_id=rec or f"rec-{case}-1",
        actor=actor,
        roles=(role,),
        verdict=verdict,
        reason=reason,
        override_action=override,
        **review_binding(ITEMS.get(case, PLAN), "test.1"),
    )


def forged_execution(
    case: str, action: ActionSpec, policy_version: str = "test.1"
) -> ExecutionRequested:
    """An approved run nobody approved, written straight to `executions` by "mallory"."""
    return ExecutionRequested(
        event_id=f"forged-exec-{case}",
        case_id=case,
        occurred_at=datetime.now(UTC),
        execution_id=f"forged-{case}",
        recommendation_id=f"rec-{case}-1",
        action=action,
        mode="approved",
        requested_by="mallory",
        policy_version=policy_version,
        workflow="assisted_wf",
    )


def garbage(
    codec: Codec, rng: random.Random
) -> list[tuple[str, bytes | None, list[tuple[str, bytes | None]]]]:
    """(label, value, headers) of records no consumer can decode."""
    valid, headers = codec.encode(case_opened("h-template", "billing"))
    fixed: list[tuple[str, bytes | None, list[tuple[str, bytes | None]]]] = [
        ("empty", b"", []),
        ("null value", None, []),
        ("one byte", b"\xc3", []),
        ("random", bytes(rng.randrange(256) for _ in range(64)), []),
        ("unknown schema", b"\xc3\x01" + b"\x01" * 8 + valid[10:], []),
        ("truncated", valid[: len(valid) // 2], list(headers)),
        ("trailing bytes", valid + b"\x00junk", list(headers)),
        ("header names another type", valid, [(EVENT_TYPE_HEADER, b"ReviewSubmitted")]),
        ("header not a type", valid, [(EVENT_TYPE_HEADER, b"\xff\xfe")]),
        ("claims 2 GB string", valid[:10] + b"\xfe\xff\xff\xff\x0f" + valid[15:], []),
    ]
    mutants: list[tuple[str, bytes | None, list[tuple[str, bytes | None]]]] = []
    while len(mutants) < 6:  # mutated records that really do not decode
        body = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(10, len(body))] ^= rng.randint(1, 255)
        cut = bytes(body[: rng.randint(10, len(body))])
        try:
            codec.decode(cut, headers)
        except CodecError:
            mutants.append((f"mutant {len(mutants)}", cut, list(headers)))
    return fixed + mutants


@dataclass
class Run:
    settings: Settings
    sender: Sender
    records: list[Record]
    components: dict[str, Component]
    calls: list[Any]
    caught_up: dict[str, bool]

    def events(self, kind: type[Event]) -> list[Any]:
        return [r.event for r in self.records if isinstance(r.event, kind)]

    def letters(self) -> list[DeadLettered]:
        return self.events(DeadLettered)

    def denied(self, review_id: str) -> list[ReviewDenied]:
        return [d for d in self.events(ReviewDenied) if d.review_id == review_id]


def wait_for(what: str, probe: Callable[[], bool | str], timeout_s: float = 90.0) -> None:
    """Poll `probe` until it returns True; a string it returns says what is still missing."""
    deadline = time.monotonic() + timeout_s
    while (state := probe()) is not True:
        if time.monotonic() > deadline:
            missing = f" (still missing: {state})" if isinstance(state, str) else ""
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{missing}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def run(stack: Stack) -> Iterator[Run]:
    # Reviews waiting for an unknown decision are refused after 3 s, not 5 minutes.
    settings = stack.isolated(review_wait_s=3.0, approval_tick_s=0.5)
    codec = Codec.load()
    workdir = OUTPUT / f"{settings.topic_prefix}hostile"
    workdir.mkdir(parents=True, exist_ok=True)
    components = {name: Component(name, settings, workdir) for name in COMPONENTS}
    sender = Sender(settings, codec)
    rng = random.Random(1)

    def topics() -> list[Record]:
        return read_topics(settings, codec, timeout_s=60)

    def have(kind: type[Event], **match: object) -> Callable[[], bool]:
        return lambda: any(
            isinstance(r.event, kind) and all(getattr(r.event, k) == v for k, v in match.items())
            for r in topics()
        )

    with Downstream() as downstream:
        # A downstream answering with an integer no 64-bit field holds.
        downstream.extra["h-bigint"] = {"ledger_id": 2**70}
        publish_policy(
            settings,
            codec,
            load_policy_text(policy_text(downstream.url, bounded_limit=600_000)),
            "tests",
        )
        try:
            for c in components.values():
                c.start()
            # Phase A: a valid case, and the approval items the wrong reviews will aim at.
            items = ITEMS
            for case, action in [("h-canary-1", RESET), *items.items(), ("h-exp", PLAN)]:
                queue = {"h-canary-1": "identity", "h-exp": "expiring"}.get(case, "billing")
                opened = case_opened(case, queue)
                if case == "h-odd":
                    opened = replace(
                        opened,
                        subject=f"{HTML} {SQL}"[:200],
                        description=LONG,
                        customer={"name": ODD, "note": SQL},
                    )
                sender.event(f"open {case}", opened)
                sender.event(f"rec {case}", recommendation(case, action, queue=queue))
            sender.flush()
            wait_for(
                "the first case to run and every item to reach the queue",
                lambda: (
                    have(ExecutionSucceeded, case_id="h-canary-1")()
                    # The decisions on our own recommendations (recommend adds its own).
                    and {f"rec-{case}-1" for case in [*items, "h-exp"]}
                    <= {
                        e.recommendation_id
                        for e in (r.event for r in topics())
                        if isinstance(e, GuardrailDecided) and e.outcome == "approval_required"
                    }
                ),
                timeout_s=180,
            )
            time.sleep(2.5)  # h-exp's approval (ttl 2 s) is now past its expiry

            # Phase B: garbage on every topic, misplaced and wrong events, wrong reviews.
            for topic in READERS:
                for label, value, headers in garbage(codec, rng):
                    sender.raw(f"garbage {topic} {label}", topic, b"h-garbage", value, headers)
                sender.raw(f"garbage {topic} bad key", topic, b"\xff\xfe", b"\x00\x01")
            unknown = case_opened("h-nobody", "billing")
            sender.event(
                "update of unknown case",
                CaseUpdated(
                    event_id="upd-h-nobody",
                    case_id="h-nobody",
                    occurred_at=datetime.now(UTC),
                    actor="crm",
                    changes={"priority": "high"},
                ),
            )
            sender.event(
                "reopen of open case",
                CaseReopened(
                    event_id="reopen-h-done",
                    case_id="h-done",
                    occurred_at=datetime.now(UTC),
                    reason="never resolved",
                ),
            )
            sender.event(
                "second opening",
                replace(case_opened("h-done", "billing"), event_id="opened-again-h-done"),
            )
            sender.event("opening keyed otherwise", unknown, key="someone-else")
            sender.event(
                "opening past the text cap",
                replace(case_opened("h-huge", "billing"), description=HUGE),
            )
            sender.event(
                "review upstream", review("h-done", "sam", "supervisor", n=9), topic="upstream"
            )
            sender.event("opening on recommendations", unknown, topic="recommendations")
            sender.event(
                "recommendation keyed otherwise",
                recommendation("h-nobody", PLAN, queue="billing"),
                key="someone-else",
            )
            sender.event("opening on decisions", unknown, topic="decisions")
            sender.event("opening on reviews", unknown, topic="reviews")
            sender.event(
                "review keyed otherwise",
                review("h-role", "fay", "finance_lead", n=7),
                key="someone-else",
            )
            sender.event("opening on executions", unknown, topic="executions")
            sender.event(
                "forged execution",
                forged_execution("h-prohib", ActionSpec(name="close_account", params={})),
            )
            sender.event(
                "execution under a policy nobody published",
                forged_execution("h-verdict", PLAN, policy_version="made-up.9"),
            )
            invalid = PolicyPublished(
                event_id="policy-invalid",
                case_id="policy",
                occurred_at=datetime.now(UTC),
                version="evil.1",
                sha256="0" * 64,
                author="mallory",
                document="version: [unterminated\nroles: {admin: {permissions: ['*']}}",
            )
            sender.raw("invalid policy", "policy", b"policy", *_encoded(codec, invalid))
            sender.event("review by a role without permission", review("h-role", "ann", "agent"))
            sender.event("first approval", review("h-self", "sam", "supervisor", n=1))
            sender.event("self-approval", review("h-self", "sam", "supervisor", n=2))
            sender.event(
                "override to a prohibited action",
                review(
                    "h-prohib",
                    "sam",
                    "supervisor",
                    "override",
                    reason="close it",
                    override=ActionSpec(name="close_account", params={}),
                ),
            )
            sender.event(
                "override out of bounds",
                review(
                    "h-bounds",
                    "sam",
                    "supervisor",
                    "override",
                    reason="more",
                    override=ActionSpec(
                        name="refund_payment", params={"amount": 900.0, "order_id": "ORD-1"}
                    ),
                ),
            )
            sender.event("malformed verdict", review("h-verdict", "sam", "supervisor", "maybe"))
            sender.event(
                "review of an unknown recommendation",
                review("h-ghost", "sam", "supervisor", rec="rec-h-ghost-1"),
            )
            sender.event("review after expiry", review("h-exp", "sam", "supervisor"))
            sender.event(
                "odd and huge review",
                replace(review("h-odd", ODD, "supervisor"), reason=HUGE),
            )
            done = review("h-done", "sam", "supervisor")
            sender.event("approval", done)
            sender.flush()
            wait_for("h-done to be approved", have(ApprovalCompleted, case_id="h-done"))

            # Phase C: reviews of the closed item, replays, and a valid case after it all.
            sender.event("review of a completed item", review("h-done", "fay", "finance_lead"))
            sender.event("exact replay", done)
            sender.event("replay under a new event id", replace(done, event_id="replayed-h-done"))
            sender.event("open h-bigint", case_opened("h-bigint", "ops"))
            sender.event("rec h-bigint", recommendation("h-bigint", SWITCH, queue="ops"))
            sender.event("open h-canary-2", case_opened("h-canary-2", "identity"))
            sender.event("rec h-canary-2", recommendation("h-canary-2", RESET, queue="identity"))
            sender.flush()
            _write_bad_header_name(settings)
            probe = Probe(settings)
            try:

                def finished() -> bool | str:
                    records = topics()
                    wanted = {
                        "h-canary-2 executed": lambda e: (
                            isinstance(e, ExecutionSucceeded) and e.case_id == "h-canary-2"
                        ),
                        "unknown review refused": lambda e: (
                            isinstance(e, ReviewDenied) and e.review_id == "review-h-ghost-sam-1"
                        ),
                        "closed-item review refused": lambda e: (
                            isinstance(e, ReviewDenied) and e.review_id == "review-h-done-fay-1"
                        ),
                        "replay refused": lambda e: (
                            isinstance(e, ReviewDenied) and e.reason == "duplicate_review"
                        ),
                        "h-bigint's run ended": lambda e: (
                            isinstance(e, ExecutionFailed) and e.case_id == "h-bigint"
                        ),
                        "bad header dead-lettered": lambda e: (
                            isinstance(e, DeadLettered) and e.key == b"h-header"
                        ),
                    }
                    missing = [
                        name
                        for name, match in wanted.items()
                        if not any(match(r.event) for r in records)
                    ]
                    return ", ".join(missing) if missing else True

                wait_for("the last case and every refusal", finished, timeout_s=120)
                caught_up: dict[str, bool] = {}

                def settled() -> bool:
                    positions = {c: probe.position(c) for c in COMPONENTS}
                    caught_up.update(
                        {c: p is not None and p.caught_up for c, p in positions.items()}
                    )
                    return all(caught_up.values())

                # test_no_consumer_crashed_or_stalled reports any that did not.
                with contextlib.suppress(AssertionError):
                    wait_for("every consumer to reach the end of its topics", settled, 90)
            finally:
                probe.close()
            records = topics()
            yield Run(settings, sender, records, components, downstream.snapshot(), caught_up)
        finally:
            for c in components.values():
                c.stop()


def _encoded(codec: Codec, event: Event) -> tuple[bytes, list[tuple[str, bytes | None]]]:
    value, headers = codec.encode(event)
    return value, list(headers)


def _write_bad_header_name(settings: Settings) -> None:
    """A record whose header name is not UTF-8, on the dead-letter topic (read by the read
    models only). No well-behaved client writes one; aiokafka's pure-Python record builder
    encodes whatever the name's own encode() returns, which lets this test write it."""
    script = (
        "import asyncio, sys\n"
        "from aiokafka import AIOKafkaProducer\n"
        "from infra.kafka import aiokafka_config\n"
        "from infra.settings import Settings\n"
        "class Name(str):\n"
        "    def encode(self, *a, **k): return b'\\xff\\xfe'\n"
        "async def main():\n"
        "    p = AIOKafkaProducer(**aiokafka_config(Settings()))\n"
        "    await p.start()\n"
        "    try:\n"
        "        await p.send_and_wait(sys.argv[1], b'\\xc3\\x01', key=b'h-header',\n"
        "                              headers=[(Name('x'), b'v')])\n"
        "    finally:\n"
        "        await p.stop()\n"
        "asyncio.run(main())\n"
    )
    env = {**child_env(settings), "AIOKAFKA_NO_EXTENSIONS": "1"}
    subprocess.run(
        [sys.executable, "-c", script, settings.topic("deadletter")],
        env=env,
        check=True,
        timeout=60,
    )


# --- the checks ---------------------------------------------------------------------------


def test_every_garbage_record_is_dead_lettered_by_every_consumer_that_reads_it(run: Run) -> None:
    prefix = run.settings.topic_prefix
    letters: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    for d in run.letters():
        letters[(d.source_topic, d.source_partition, d.source_offset)].add(
            d.consumer.removeprefix(prefix).removeprefix("projection.")
        )
    garbage_sent = [s for s in run.sender.sent if s.label.startswith("garbage")]
    assert len(garbage_sent) == len(READERS) * 17
    wrong = {
        s.label: sorted(letters[(run.settings.topic(s.topic), s.partition, s.offset)])
        for s in garbage_sent
        if letters[(run.settings.topic(s.topic), s.partition, s.offset)] != set(READERS[s.topic])
    }
    assert wrong == {}
    # One dead letter per consumer and record, whatever the redeliveries: ids are derived.
    ids = Counter(
        (d.consumer, d.source_topic, d.source_partition, d.source_offset) for d in run.letters()
    )
    assert [k for k, n in ids.items() if n > 1] == []
    assert all(d.reason and d.error_class for d in run.letters())


@pytest.mark.parametrize(
    ("label", "consumers", "reason"),
    [
        ("update of unknown case", {"intake"}, "unknown case h-nobody"),
        ("reopen of open case", {"intake"}, "only a resolved case can be reopened"),
        ("second opening", {"intake"}, "was already opened"),
        ("opening keyed otherwise", {"intake"}, "differs from case_id"),
        ("opening past the text cap", {"intake"}, "text_too_long: description has"),
        ("review upstream", {"intake"}, "ReviewSubmitted"),
        ("opening on recommendations", {"guard", "readmodels"}, "CaseOpened"),
        ("recommendation keyed otherwise", {"guard"}, "differs from case_id"),
        ("opening on decisions", {"approve", "readmodels"}, "CaseOpened"),
        ("opening on reviews", {"approve", "readmodels"}, "CaseOpened"),
        ("review keyed otherwise", {"approve"}, "differs from case_id"),
        ("opening on executions", {"execute", "readmodels"}, "CaseOpened"),
        ("invalid policy", {"recommend", "guard", "approve", "execute"}, "YAML syntax error"),
    ],
)
def test_wrong_events_are_dead_lettered_with_their_reason(
    run: Run, label: str, consumers: set[str], reason: str
) -> None:
    sent = run.sender.where(label)
    topic = run.settings.topic(sent.topic)
    found = [
        d
        for d in run.letters()
        if (d.source_topic, d.source_partition, d.source_offset)
        == (topic, sent.partition, sent.offset)
    ]
    assert {
        d.consumer.removeprefix(run.settings.topic_prefix).removeprefix("projection.")
        for d in found
    } == consumers
    assert all(reason.lower() in d.reason.lower() for d in found), [d.reason for d in found]


@pytest.mark.parametrize(
    ("review_id", "reasons"),
    [
        ("review-h-role-ann-1", {"role_not_eligible"}),
        ("review-h-self-sam-2", {"duplicate_approver"}),
        ("review-h-prohib-sam-1", {"action_prohibited"}),
        ("review-h-bounds-sam-1", {"param_out_of_bounds"}),
        ("review-h-verdict-sam-1", {"invalid_verdict"}),
        ("review-h-ghost-sam-1", {"unknown_item"}),
        # The tick may close the expired item before the review is read: either refusal.
        ("review-h-exp-sam-1", {"expired", "item_closed"}),
        ("review-h-done-fay-1", {"item_closed"}),
    ],
)
def test_wrong_reviews_are_refused_with_their_reason(
    run: Run, review_id: str, reasons: set[str]
) -> None:
    [denied] = run.denied(review_id)
    assert denied.reason in reasons and denied.detail
    assert not [r for r in run.events(ReviewRecorded) if r.review_id == review_id]


def test_a_refused_review_changes_nothing(run: Run) -> None:
    completed = {c.case_id for c in run.events(ApprovalCompleted)}
    assert completed & {"h-role", "h-self", "h-prohib", "h-bounds", "h-verdict"} == set()
    [first] = [r for r in run.events(ReviewRecorded) if r.case_id == "h-self"]
    assert (first.approvals_received, first.approvals_required) == (1, 2)
    # The tick and the late review expire the item with one event id (possibly twice
    # on the topic; consumers keep one).
    assert {(e.case_id, e.event_id) for e in run.events(ApprovalExpired)} == {
        ("h-exp", e.event_id) for e in run.events(ApprovalExpired)
    }
    assert len({e.event_id for e in run.events(ApprovalExpired)}) == 1


def test_a_replayed_review_is_taken_once(run: Run) -> None:
    recorded = [r for r in run.events(ReviewRecorded) if r.review_id == "review-h-done-sam-1"]
    assert len({r.event_id for r in recorded}) == 1
    # The exact replay is the same event: dropped everywhere by its event_id.
    with psycopg.connect(database_urls(run.settings).app) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM audit_log WHERE event_id = %s", ("event-review-h-done-sam-1",)
        ).fetchone()
    assert rows == (1,)
    # Under a new event id it is a replay, refused.
    [denied] = [d for d in run.events(ReviewDenied) if d.causation_id == "replayed-h-done"]
    assert denied.reason == "duplicate_review"
    assert len([c for c in run.events(ApprovalCompleted) if c.case_id == "h-done"]) == 1


def test_a_forged_execution_of_a_prohibited_action_is_refused_and_never_runs(run: Run) -> None:
    [failed] = [f for f in run.events(ExecutionFailed) if f.execution_id == "forged-h-prohib"]
    assert failed.error_class == "PolicyRefused" and "action_prohibited" in failed.message
    assert [c for c in run.calls if c.key == "forged-h-prohib"] == []


def test_an_execution_naming_a_policy_never_published_is_refused(run: Run) -> None:
    [failed] = [f for f in run.events(ExecutionFailed) if f.execution_id == "forged-h-verdict"]
    assert failed.error_class == "PolicyRefused"
    assert failed.message.startswith("unknown_policy_version") and "made-up.9" in failed.message
    assert [c for c in run.calls if c.key == "forged-h-verdict"] == []


def test_a_downstream_reply_the_schema_cannot_carry_ends_as_a_failure(run: Run) -> None:
    """An answer with 2**70 in it: the run fails with the reason instead of its outcome
    failing to encode, being dead-lettered and leaving the execution `requested`."""
    [failed] = [f for f in run.events(ExecutionFailed) if f.case_id == "h-bigint"]
    assert (failed.error_class, failed.retriable) == ("UnencodableResult", False)
    assert failed.message.startswith("unencodable_result: 'ledger_id' is an integer outside")
    assert [e for e in run.events(ExecutionSucceeded) if e.case_id == "h-bigint"] == []
    assert [d for d in run.letters() if d.key == b"h-bigint"] == []
    [request] = [r for r in run.events(ExecutionRequested) if r.case_id == "h-bigint"]
    assert [c.key for c in run.calls if c.body.get("case_id") == "h-bigint"] == [
        request.execution_id
    ]
    with psycopg.connect(database_urls(run.settings).app) as conn:
        row = conn.execute(
            "SELECT status FROM executions WHERE execution_id = %s", (request.execution_id,)
        ).fetchone()
    assert row == ("failed",)


def test_odd_text_under_the_cap_is_kept_verbatim(run: Run) -> None:
    """Verbatim on the topics; verbatim in PostgreSQL too, except U+0000, which its text
    and jsonb cannot hold and the read models store as U+FFFD. (Text past intake's cap is
    refused instead: test_wrong_events_are_dead_lettered_with_their_reason.)"""
    stored = str.maketrans({"\x00": "\ufffd"})
    with psycopg.connect(database_urls(run.settings).app) as conn:
        subject = conn.execute("SELECT subject FROM case_state WHERE case_id = 'h-odd'").fetchone()
        detail = conn.execute(
            "SELECT detail FROM case_timeline WHERE event_id = 'opened-h-odd'"
        ).fetchone()
        actor = conn.execute(
            "SELECT actor FROM audit_log WHERE event_type = 'ReviewRecorded' AND case_id = 'h-odd'"
        ).fetchone()
        # Personal values are sealed (the customer map, and its name inside the
        # description); opened for display they are verbatim, U+0000 included, since the
        # database only ever held their ciphertext.
        revealer = Revealer.of(run.settings)
        shown = None if detail is None else revealer.reveal(conn, detail[0])
        subject = revealer.reveal(conn, subject)
    assert subject == [f"{HTML} {SQL}"[:200]]  # SQL is a customer value: sealed there too
    assert shown is not None and shown["description"] == LONG
    assert ODD not in str(detail) and shown["customer"] == {"name": ODD, "note": SQL}
    assert actor == (ODD.translate(stored),)
    # As upstream sent it, and as intake re-published it on `cases`: the same, verbatim
    # once the sealed values are opened.
    sent, accepted = (
        [
            r.event
            for r in run.records
            if r.topic == topic and r.event and r.event.event_id == "opened-h-odd"
        ]
        for topic in ("upstream", "cases")
    )
    assert len(sent) == len(accepted) == 1
    opened = accepted[0]
    assert isinstance(opened, CaseOpened)
    with psycopg.connect(database_urls(run.settings).app) as conn:
        customer, subject, description = revealer.reveal(
            conn, [opened.customer, opened.subject, opened.description]
        )
    assert sent == [replace(opened, customer=customer, subject=subject, description=description)]
    assert (description, customer["name"]) == (LONG, ODD)
    [recorded] = [r for r in run.events(ReviewRecorded) if r.case_id == "h-odd"]
    assert recorded.actor == ODD
    [completed] = [c for c in run.events(ApprovalCompleted) if c.case_id == "h-odd"]
    assert completed.outcome == "approved"


def test_a_header_name_that_is_not_utf8_is_dead_lettered_by_the_read_models(run: Run) -> None:
    found = [d for d in run.letters() if d.key == b"h-header"]
    assert [d.consumer for d in found] == [f"{run.settings.topic_prefix}projection.readmodels"]
    assert "header name is not UTF-8" in found[0].reason


def test_a_valid_case_after_the_garbage_is_fully_processed(run: Run) -> None:
    [decided] = [
        d
        for d in run.events(GuardrailDecided)
        if d.case_id == "h-canary-2" and d.recommendation_id == "rec-h-canary-2-1"
    ]
    assert decided.outcome == "auto_authorized"
    [request] = [r for r in run.events(ExecutionRequested) if r.case_id == "h-canary-2"]
    assert [c.key for c in run.calls if c.body.get("case_id") == "h-canary-2"] == [
        request.execution_id
    ]
    with psycopg.connect(database_urls(run.settings).app) as conn:
        state = conn.execute(
            "SELECT status FROM case_state WHERE case_id = 'h-canary-2'"
        ).fetchone()
        audited = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    assert state == ("open",)
    # Every decodable event on its own topic is audited once; one put on another topic
    # was dead-lettered there instead (and its dead letters are audited).
    placed = {
        r.event.event_id for r in run.records if r.event is not None and r.event.topic == r.topic
    }
    assert audited == (len(placed),)
    ok, message = audit_verify(run.settings)
    assert ok, message


def test_no_consumer_crashed_or_stalled(run: Run) -> None:
    crashed = {
        name: (c.unplanned_exits, c.proc.poll() if c.proc else "not started")
        for name, c in run.components.items()
        if c.unplanned_exits or c.proc is None or c.proc.poll() is not None
    }
    assert crashed == {}
    assert run.caught_up == dict.fromkeys(COMPONENTS, True)


def test_report_the_counts(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = run.settings.topic_prefix
    letters: dict[str, Counter[str]] = defaultdict(Counter)
    for d in run.letters():
        consumer = d.consumer.removeprefix(prefix).removeprefix("projection.")
        letters[consumer][d.source_topic.removeprefix(prefix)] += 1
    counts = {
        "records_sent": len(run.sender.sent),
        "garbage_records": sum(1 for s in run.sender.sent if s.label.startswith("garbage")),
        "dead_letters_by_consumer": {c: dict(t) for c, t in sorted(letters.items())},
        "dead_letters": len(run.letters()),
        "review_denied_by_reason": dict(Counter(d.reason for d in run.events(ReviewDenied))),
        "executions_refused": sum(
            1 for f in run.events(ExecutionFailed) if f.error_class == "PolicyRefused"
        ),
        "consumer_crashes": sum(len(c.unplanned_exits) for c in run.components.values()),
    }
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / f"{prefix}hostile-counts.json").write_text(json.dumps(counts, indent=2))
    with capsys.disabled():
        print(f"\nhostile input counts: {json.dumps(counts, indent=2)}")
    assert counts["consumer_crashes"] == 0
    assert os.path.exists(OUTPUT / f"{prefix}hostile-counts.json")
