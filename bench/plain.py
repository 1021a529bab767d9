"""The stage baselines: recommend and guard as plain confluent-kafka loops over the very same
pure decision functions as the faust processors, with the same guarantees.

``python -m bench.plain recommend|guard`` (settings from the environment, like a worker).

Per batch: decode, decide, produce the events *and* a changelog record per state change
(faust's tables write one too, so state survives a restart in both), wait for every ack,
then commit the input offsets. That is at-least-once with durable state, as in the faust
processors; only the framework differs: no per-record acknowledgement wait, no agent,
no stream machinery. Dead-lettering is left out (the bench's input is clean: a bad
record stops the loop instead).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, NewTopic

from bench.raw import next_batch, position, read_to_end
from bench.workload import WireHeaders
from infra.kafka import common_config, consumer_config, make_producer
from infra.settings import Settings
from policy.facts import CaseFacts
from policy.guard import AUTO_AUTHORIZED, decide_guard
from policy.loader import LoadedPolicy, load_policy_text
from processors.guard_state import AutoRuns, facts_to_json, runs_key
from processors.recommend.baseline import BaselineIndex
from processors.recommend.case_view import open_view
from processors.recommend.processor import view_to_json
from processors.recommend.service import recommend, route
from processors.recommend.visibility import Visibility
from processors.records import record_time
from schemas.codec import Codec
from schemas.events import (
    CaseOpened,
    Event,
    ModelOutputRejected,
    PolicyPublished,
    RecommendationProduced,
)

# Small enough that output arrives steadily (the rate is sampled from outside), large
# enough that a flush and a commit per batch cost little.
BATCH = 200
# (topic, key, value, headers) of one record to produce.
Out = list[tuple[str, bytes, bytes, WireHeaders | None]]


def latest_policy(settings: Settings, codec: Codec) -> LoadedPolicy:
    policies = [
        codec.decode(m.value(), m.headers())
        for m in read_to_end(settings, settings.topic("policy"))
    ]
    published = [p for p in policies if isinstance(p, PolicyPublished)]
    if not published:
        raise RuntimeError("no policy published")
    return load_policy_text(published[-1].document)


class Loop:
    """consume → handle → produce (events + changelog) → flush → commit, per batch."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        name: str,
        topics: list[str],
        flush_each: bool = False,
    ) -> None:
        self.settings = settings
        # The per-message flush lever: wait for each record's outputs before the next.
        self.flush_each = flush_each
        self.codec = codec
        self.changelog = settings.topic(f"plain-{name}-changelog")
        _create_changelog(settings, self.changelog)
        self.consumer = Consumer(consumer_config(settings, f"{settings.topic_prefix}plain.{name}"))
        self.consumer.subscribe([settings.topic(t) for t in topics])
        self.producer = make_producer(settings)

    def emit(self, out: Out, events: list[Event]) -> None:
        for e in events:
            value, headers = self.codec.encode(e)
            out.append((self.settings.topic(e.topic), e.case_id.encode(), value, headers))

    def remember(self, out: Out, key: str, value: Any) -> None:
        out.append((self.changelog, key.encode(), orjson.dumps(value), None))

    def run(self, handle: Callable[[Message, Out], None], stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                batch = next_batch(self.consumer, BATCH, 0.5)
                if not batch:
                    continue
                out: Out = []
                offsets: dict[tuple[str, int], int] = {}
                for msg in batch:
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(err)
                    handle(msg, out)
                    topic, partition, offset = position(msg)
                    offsets[(topic, partition)] = offset + 1
                    if self.flush_each:
                        self._send(out)
                        out = []
                self._send(out)
                # Outputs durable before the inputs are committed: at-least-once.
                if self.producer.flush(60):
                    raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
                self.consumer.commit(
                    offsets=[TP(t, p, o) for (t, p), o in offsets.items()], asynchronous=True
                )
        finally:
            self.consumer.close()

    def _send(self, out: Out) -> None:
        for topic, key, value, headers in out:
            self._produce(topic, key, value, headers)
        if self.flush_each and self.producer.flush(60):
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))

    def _produce(self, topic: str, key: bytes, value: bytes, headers: WireHeaders | None) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.05)


def _create_changelog(settings: Settings, name: str) -> None:
    admin = AdminClient(common_config(settings))
    if name in admin.list_topics(timeout=10).topics:
        return
    topic = NewTopic(
        name,
        num_partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        config={"cleanup.policy": "compact"},
    )
    for future in admin.create_topics([topic]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def run_recommend(
    settings: Settings, codec: Codec, stop: threading.Event, flush_each: bool = False
) -> None:
    """processors.recommend.processor, CaseOpened only (the bench sends no updates)."""
    policy = latest_policy(settings, codec)
    index = BaselineIndex(Visibility.from_policy(policy.policy.model_visibility), max_cases=20_000)
    # The faust processor's History reads all of `cases` before recommending: so does this.
    for msg in read_to_end(settings, settings.topic("cases")):
        index.observe(codec.decode(msg.value(), msg.headers()))
    views: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    loop = Loop(settings, codec, "recommend", ["cases"], flush_each)

    def handle(msg: Message, out: Out) -> None:
        event = codec.decode(msg.value(), msg.headers())
        if not isinstance(event, CaseOpened) or event.case_id in views:
            index.observe(event)
            return
        view = open_view(event)
        if view.last_event_id not in done:
            workflow = route(view, policy, index)
            loop.emit(
                out,
                recommend(view, workflow, policy, index, record_time(msg.timestamp()[1] / 1000)),
            )
            done.add(view.last_event_id)
            loop.remember(out, view.last_event_id, True)
        views[event.case_id] = view_to_json(view)
        loop.remember(out, event.case_id, views[event.case_id])
        index.observe(event)

    loop.run(handle, stop)


def run_guard(
    settings: Settings, codec: Codec, stop: threading.Event, flush_each: bool = False
) -> None:
    """processors.guard: decide each recommendation once its CaseOpened is known."""
    policy = latest_policy(settings, codec)
    facts: dict[str, CaseFacts] = {}
    held: dict[str, list[tuple[RecommendationProduced, float, int]]] = {}
    decided: set[str] = set()
    auto_runs: dict[str, AutoRuns] = {}
    cases_topic = settings.topic("cases")
    loop = Loop(settings, codec, "guard", ["cases", "recommendations"], flush_each)

    def decide(
        out: Out, rec: RecommendationProduced, at: float, partition: int, case: CaseFacts
    ) -> None:
        if rec.event_id in decided:
            return
        now = record_time(at)
        workflow = policy.policy.workflow_for(case.match_fields(), rec.category)
        key = runs_key(workflow.name, partition) if workflow else None
        runs = auto_runs.get(key, AutoRuns()) if key else AutoRuns()
        decision = decide_guard(
            rec, case, policy, runs.times(excluding=rec.event_id), now, shards=settings.partitions
        )
        loop.emit(out, [decision])
        if decision.outcome == AUTO_AUTHORIZED and key and workflow and workflow.blast_radius:
            auto_runs[key] = runs.add(rec.event_id, now, workflow.blast_radius.window_s)
            loop.remember(out, key, auto_runs[key].to_json())
        decided.add(rec.event_id)
        loop.remember(out, rec.event_id, decision.event_id)

    def handle(msg: Message, out: Out) -> None:
        event = codec.decode(msg.value(), msg.headers())
        at = msg.timestamp()[1] / 1000
        topic, partition, _ = position(msg)
        if topic == cases_topic:
            if not isinstance(event, CaseOpened):
                return
            if event.case_id not in facts:
                facts[event.case_id] = CaseFacts.from_case_opened(event)
                loop.remember(out, event.case_id, facts_to_json(facts[event.case_id]))
            for rec, rec_at, partition in held.pop(event.case_id, ()):
                decide(out, rec, rec_at, partition, facts[event.case_id])
        elif isinstance(event, RecommendationProduced):
            case = facts.get(event.case_id)
            if case is not None:
                decide(out, event, at, partition, case)
            else:
                held.setdefault(event.case_id, []).append((event, at, partition))
        elif not isinstance(event, ModelOutputRejected):
            raise ValueError(f"{event.event_type} does not belong on recommendations")

    loop.run(handle, stop)


RUNNERS = {"recommend": run_recommend, "guard": run_guard}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    flush_each = "--flush-each" in args
    args = [a for a in args if a != "--flush-each"]
    if len(args) != 1 or args[0] not in RUNNERS:
        sys.exit(f"usage: python -m bench.plain {{{'|'.join(RUNNERS)}}} [--flush-each]")
    settings = Settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.monotonic()
    RUNNERS[args[0]](settings, Codec.load(), stop, flush_each)
    print(f"plain {args[0]} stopped after {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
