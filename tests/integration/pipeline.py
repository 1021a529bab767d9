"""Test-side plumbing for the guard → approve → execute pipeline: hand-made input events,
a test policy, and readers that follow the output topics (the downstream HTTP server is
tests.downstream)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from infra.kafka import common_config, consumer_config, producer_config
from infra.settings import Settings
from infra.topics import produced_to
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    CaseOpened,
    Event,
    Provenance,
    RecommendationProduced,
    ReviewSubmitted,
    Routing,
    derived_event_id,
    record_key,
    review_binding,
)

# The downstream HTTP server lives in bench/ (the chaos harness uses it too); re-exported
# here for the processor tests.
from tests.downstream import Call as Call
from tests.downstream import Downstream as Downstream

T = TypeVar("T")

# --- input events ----------------------------------------------------------------------


def case_opened(case_id: str, queue: str) -> CaseOpened:
    return CaseOpened(
        event_id=f"opened-{case_id}",
        case_id=case_id,
        occurred_at=datetime.now(UTC),
        source="crm",
        channel="email",
        queue=queue,
        team="tier1",
        subject=f"case {case_id}",
        description="hand-made for a processor test",
        priority="normal",
        customer={},
        attributes={},
    )


def routing(queue: str) -> Routing:
    """The routing fields `case_opened(…, queue)` gives a case."""
    return Routing(channel="email", queue=queue, team="tier1", priority="normal", source="crm")


def recommendation(
    case_id: str, action: ActionSpec | None, n: int = 1, *, queue: str | None = None
) -> RecommendationProduced:
    """The `n`th recommendation for a case, as the recommender would make it: routed on
    the fields of `case_opened(case_id, queue)` (no `queue`: no routing, as a recommender
    older than the routing field wrote them)."""
    return RecommendationProduced(
        event_id=f"rec-event-{case_id}-{n}",
        case_id=case_id,
        occurred_at=datetime.now(UTC),
        causation_id=f"opened-{case_id}",
        correlation_id=f"opened-{case_id}",
        recommendation_id=f"rec-{case_id}-{n}",
        summary="hand-made",
        category=None,
        confidence=0.9,
        similar_cases=(),
        action=action,
        rationale="test",
        provenance=Provenance(
            recommender="baseline", fields_seen=("subject",), input_sha256="0" * 64
        ),
        routing=None if queue is None else routing(queue),
    )


def review(
    rec: RecommendationProduced,
    actor: str,
    roles: tuple[str, ...],
    verdict: str = "approve",
    n: int = 1,
    *,
    shown: ActionSpec | None = None,
    policy_version: str | None = None,
) -> ReviewSubmitted:
    """A review as the console submits it, bound to the item it showed: by default the
    recommended action under the policy tests publish (`policy_text`'s default)."""
    review_id = f"review-{rec.recommendation_id}-{actor}-{n}"
    return ReviewSubmitted(
        event_id=f"event-{review_id}",
        case_id=rec.case_id,
        occurred_at=datetime.now(UTC),
        correlation_id=rec.correlation_id,
        review_id=review_id,
        recommendation_id=rec.recommendation_id,
        actor=actor,
        roles=roles,
        verdict=verdict,
        # What the console would have shown: the recommended action under its policy.
        **(
            review_binding(shown or rec.action, policy_version or "test.1")
            if (shown or rec.action) is not None
            else {}
        ),
    )


def decision_id_of(rec: RecommendationProduced) -> str:
    return derived_event_id(rec.event_id, "GuardrailDecided")


def send(
    settings: Settings,
    codec: Codec,
    events: list[Event],
    partition: int | None = None,
    producer: Producer | None = None,
) -> None:
    """Produce events as a client outside the pipeline does (case events to intake, the
    others to their own topics), keyed by case_id (optionally to one partition)."""
    own = producer is None
    producer = producer or Producer(producer_config(settings))
    for event in events:
        value, headers = codec.encode(event)
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(
                    settings.topic(produced_to(event)),
                    key=record_key(event),
                    value=value,
                    headers=headers,
                    **extra,
                )
                break
            except BufferError:
                producer.poll(0.1)
    if own and producer.flush(30):
        raise AssertionError("test events not delivered within 30 s")


# --- following output topics -----------------------------------------------------------


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    event: Event


@dataclass
class Tail:
    """Reads topics from the beginning, keeping every record; `wait` polls for more."""

    settings: Settings
    topics: tuple[str, ...]
    codec: Codec = field(default_factory=Codec.load)
    records: list[Record] = field(default_factory=list)
    # read_uncommitted shows what open (and later aborted) transactions wrote too.
    isolation: str = "read_committed"

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            consumer_config(
                self.settings,
                f"test-tail-{uuid.uuid4()}",
                **{"enable.partition.eof": False, "isolation.level": self.isolation},
            )
        )
        names = [self.settings.topic(t) for t in self.topics]
        meta = self._consumer.list_topics(timeout=10).topics
        self._consumer.assign(
            [TopicPartition(n, p, OFFSET_BEGINNING) for n in names for p in meta[n].partitions]
        )

    def poll(self, seconds: float = 0.2) -> None:
        for msg in self._consumer.consume(1000, seconds):
            if msg.error() is None:
                value = msg.value() or b""
                self.records.append(
                    Record(
                        msg.topic() or "",
                        msg.partition() or 0,
                        msg.offset() or 0,
                        value,
                        self.codec.decode(value, msg.headers()),
                    )
                )

    def events(self, kind: type[T], **match: object) -> list[T]:
        return [
            r.event
            for r in self.records
            if isinstance(r.event, kind) and all(getattr(r.event, k) == v for k, v in match.items())
        ]

    def wait(
        self,
        probe: Callable[[], T | None],
        timeout_s: float = 60.0,
        what: str | Callable[[], str] = "condition",
    ) -> T:
        """Poll until `probe` returns something truthy; fail naming `what` otherwise
        (a callable `what` is asked at the time, to say how far things got)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                said = what() if callable(what) else what
                raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {said}")

    def close(self) -> None:
        self._consumer.close()


def caught_up(settings: Settings, component: str, topics: tuple[str, ...]) -> bool:
    """Has the processor's consumer group committed the end of every partition of `topics`?"""
    group = f"{settings.topic_prefix}{component}"
    admin = AdminClient(common_config(settings))
    [future] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]).values()
    committed = {(tp.topic, tp.partition): tp.offset for tp in future.result(10).topic_partitions}
    probe = Consumer(consumer_config(settings, f"test-probe-{uuid.uuid4()}"))
    try:
        for name in (settings.topic(t) for t in topics):
            for p in probe.list_topics(name, timeout=10).topics[name].partitions:
                _low, high = probe.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                if high > 0 and committed.get((name, p), -1) < high:
                    return False
    finally:
        probe.close()
    return True


def wait_caught_up(
    settings: Settings, component: str, topics: tuple[str, ...], timeout_s: float = 30.0
) -> None:
    """Wait until `component` has read (and committed) all of `topics`: nothing it could
    still produce from them is pending."""
    deadline = time.monotonic() + timeout_s
    while not caught_up(settings, component, topics):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{component} did not catch up with {topics} within {timeout_s:.0f}s"
            )
        time.sleep(0.5)


def approvals_settled(settings: Settings, out: Tail, timeout_s: float = 30.0) -> None:
    """Approve and execute have read (and committed) everything there is, so nothing more
    will come from them; `out` then reads their last outputs."""
    for component, topics in (
        ("approve", ("decisions", "reviews")),
        ("execute", ("executions",)),
    ):
        wait_caught_up(settings, component, topics, timeout_s=timeout_s)
    out.poll(1.0)


# --- the test policy -------------------------------------------------------------------

POLICY_TEMPLATE = """\
# Derived from policy/default.yaml for the processor integration tests: http adapters
# pointing at the test's downstream server, one workflow per scenario (matched by queue).
version: "{version}"
description: processor integration tests
roles:
  agent: {{permissions: [identity.credentials, case.escalate]}}
  supervisor: {{permissions: [identity.credentials, billing.refund, billing.plan, case.escalate]}}
  finance_lead: {{permissions: [billing.refund, billing.plan, case.escalate]}}
  admin: {{permissions: [identity.credentials, billing.refund, billing.plan, account.close]}}
catalog:
  reset_password:
    params:
      method: {{type: enum, values: [email_link, sms_code]}}
    risk: low
    permission: identity.credentials
    timeout_s: 5
    adapter: {{kind: http, url: "{url}/ok", post_condition: done}}
  refund_payment:
    params:
      amount: {{type: number, min: 0, max: 500}}
      order_id: {{type: string, pattern: 'ORD-\\d+', max_length: 32}}
    risk: high
    permission: billing.refund
    timeout_s: 5
    approvals: {{count: 2, roles: [supervisor, finance_lead]}}
    adapter: {{kind: http, url: "{url}/ok", post_condition: done}}
  change_plan:
    params:
      plan: {{type: enum, values: [basic, pro, enterprise]}}
    risk: medium
    reversible: true
    rollback: {{action: change_plan, params: {{plan: result.previous_plan}}}}
    permission: billing.plan
    timeout_s: 5
    approvals: {{count: 1, roles: [supervisor, finance_lead]}}
    adapter: {{kind: http, url: "{url}/plan", post_condition: plan_active}}
  switch_plan:
    params:
      plan: {{type: enum, values: [basic, pro, enterprise]}}
    risk: medium
    reversible: true
    rollback: {{action: switch_plan, params: {{plan: result.previous_plan}}}}
    permission: billing.plan
    timeout_s: 5
    adapter: {{kind: http, url: "{url}/plan", post_condition: plan_active}}
  sync_profile:
    risk: low
    permission: identity.credentials
    timeout_s: 1
    adapter: {{kind: http, url: "{url}/slow"}}
  close_account:
    risk: critical
    permission: account.close
    timeout_s: 5
    approvals: {{count: 2, roles: [admin]}}
    adapter: {{kind: http, url: "{url}/ok"}}
workflows:
  shadow_wf:
    match: {{queue: shadowq}}
    phase: shadow
    actions:
      reset_password: {{mode: approve}}
  assisted_wf:
    match: {{queue: billing}}
    phase: {assisted_phase}
    actions:
      refund_payment: {{mode: approve, bounds: {{amount: {{max: 200}}}}, on_out_of_bounds: deny}}
      change_plan: {{mode: approve}}
      reset_password: {{mode: {assisted_reset_mode}}}
      close_account: {{mode: prohibited}}
    blast_radius: {{max_auto_runs: 600000, window_s: 3600}}
  bounded_wf:
    match: {{queue: identity}}
    phase: bounded
    actions:
      reset_password: {{mode: auto, bounds: {{method: {{values: [email_link]}}}}}}
    blast_radius: {{max_auto_runs: {bounded_limit}, window_s: 3600}}
  lenient_wf:
    match: {{queue: identity2}}
    phase: bounded
    actions:
      reset_password:
        mode: auto
        bounds: {{method: {{values: [email_link]}}}}
        on_out_of_bounds: approve
    blast_radius: {{max_auto_runs: 600000, window_s: 3600}}
  ops_wf:
    match: {{queue: ops}}
    phase: bounded
    actions:
      sync_profile: {{mode: auto}}
      switch_plan: {{mode: auto}}
    blast_radius: {{max_auto_runs: 600000, window_s: 3600}}
  expiring_wf:
    match: {{queue: expiring}}
    phase: assisted
    actions:
      change_plan: {{mode: approve}}
    approval_ttl_s: 2
model_visibility:
  fields: [subject]
audit:
  required_outcomes: [GuardrailDecided:denied]
"""


def policy_text(
    url: str,
    version: str = "test.1",
    bounded_limit: int = 6,
    assisted_phase: str = "assisted",
    assisted_reset_mode: str = "approve",
) -> str:
    """The test policy text; `bounded_limit` is bounded_wf's max_auto_runs (with 6
    partitions, 6 lets each partition run one automatically per hour)."""
    return POLICY_TEMPLATE.format(
        url=url,
        version=version,
        bounded_limit=bounded_limit,
        assisted_phase=assisted_phase,
        assisted_reset_mode=assisted_reset_mode,
    )
