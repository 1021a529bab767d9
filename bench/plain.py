"""The stage baselines: a processor's own handler in the plainest confluent-kafka loop.

``python -m bench.plain NAME`` (settings from the environment, like a worker).

Per batch: decode and check (`processors.loop.checked`), `handler.handle` (the very code
the processor runs), produce the events
and a changelog record per state change, wait for every ack, then commit the input
offsets. At-least-once with durable state, as a careful hand-written consumer would be;
what it leaves out is what `processors.loop` adds: transactions, the disk-backed store (state
here is a dict), the policy and dead-letter plumbing (the bench's input is clean: a bad
record stops the loop), rebalance restores, timers. The ratio of a stage to this loop is
the cost of those guarantees.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as TP

from bench.raw import next_batch, read_to_end
from infra.kafka import (
    consumer_config,
    make_producer,
    position_of,
    produce,
    read_headers,
    records_of,
)
from infra.secrets import install_event_id_key
from infra.settings import Settings
from infra.stopping import stop_on_signals
from infra.topics import ensure_changelogs
from policy.loader import LoadedPolicy, load_policy_text
from processors.handler import Handler, Outbox, Step
from processors.loop import changelog_topic, checked
from processors.store import MemoryStore, Overlay, iter_changes
from processors.worker import PROCESSORS, build_handler
from schemas.codec import Codec
from schemas.events import PolicyPublished

BATCH = 500  # as the processors' default batch_max


def latest_policy(settings: Settings, codec: Codec) -> LoadedPolicy:
    policies = [
        codec.decode(m.value(), m.headers())
        for m in read_to_end(settings, settings.topic("policy"))
    ]
    published = [p for p in policies if isinstance(p, PolicyPublished)]
    if not published:
        raise RuntimeError("no policy published")
    return load_policy_text(published[-1].document)


def run(settings: Settings, codec: Codec, handler: Handler, stop: threading.Event) -> None:
    """consume → handle → produce (events + changelog) → flush → commit, per batch."""
    policy = latest_policy(settings, codec) if handler.needs_policy else None
    versions = {policy.version: policy} if policy is not None else {}
    handler.start(policy, stop)
    group = f"{settings.topic_prefix}plain.{handler.component}"
    changelogs = {
        s: changelog_topic(settings, f"plain-{handler.component}", s) for s in handler.stores
    }
    if changelogs:
        ensure_changelogs(settings, list(changelogs.values()))
    streams = {settings.topic(s): s for s in handler.inputs}
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe(list(streams))
    producer = make_producer(settings)
    store = MemoryStore()
    try:
        while not stop.is_set():
            handler.on_turn(policy)
            messages = next_batch(consumer, BATCH, 0.5)
            if not messages:
                continue
            batch, offsets = [], {}
            for msg in records_of(messages):
                topic, partition, offset = position_of(msg)
                offsets[(topic, partition)] = offset + 1
                # The processors' own decoding and checks; a bad record stops the loop.
                batch.append(checked(msg, read_headers(msg), codec, handler, streams))
            out = Outbox(codec, settings.topic_prefix, group)
            overlay = Overlay(store)
            step = Step(overlay, out, policy, datetime.now(UTC), settings.partitions, versions)
            handler.handle(batch, step)
            for r in out.records:
                produce(producer, r.topic, r.key, r.value, r.headers, r.partition)
            changes = overlay.changes()
            for name, partition, key, value in iter_changes(changes):
                produce(producer, changelogs[name], key, value, None, partition)
            # Outputs durable before the inputs are committed: at-least-once.
            if producer.flush(60):
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
            store.apply(changes)
            consumer.commit(
                offsets=[TP(t, p, o) for (t, p), o in offsets.items()], asynchronous=True
            )
    finally:
        consumer.close()
        handler.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in PROCESSORS:
        sys.exit(f"usage: python -m bench.plain {{{'|'.join(PROCESSORS)}}}")
    settings = Settings()
    install_event_id_key(settings)
    codec = Codec.load()
    stop = stop_on_signals()
    started = time.monotonic()
    run(settings, codec, build_handler(args[0], settings, codec), stop)
    print(f"plain {args[0]} stopped after {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
