"""The `policy` topic as the console and the CLI use it: publish a policy document (one
PolicyPublished, keyed by its version) and read which policy is in force."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition

from console.send import send_acknowledged
from infra.kafka import consumer_config
from infra.settings import Settings
from policy.loader import LoadedPolicy, PolicyHistory, PolicyInvalid, policy_key
from schemas.codec import Codec
from schemas.codec_errors import CodecError
from schemas.events import PolicyPublished, new_event_id, utc_now


def publish_policy(
    settings: Settings,
    codec: Codec,
    loaded: LoadedPolicy,
    author: str,
    dry_run: str | None = None,
) -> PolicyPublished:
    """Send `loaded` as a PolicyPublished and wait until the broker has it; `dry_run` is
    the dry-run its publisher looked at (or "skipped")."""
    event = PolicyPublished(
        # A fresh id: publishing an earlier document again (a rollback) is a new event.
        event_id=new_event_id(),
        case_id="policy",
        occurred_at=utc_now(),
        version=loaded.version,
        sha256=loaded.sha256,
        author=author,
        document=loaded.text,
        dry_run=dry_run,
    )
    send_acknowledged(settings, codec, event, policy_key(loaded.version))
    return event


def read_published(
    settings: Settings, codec: Codec, timeout_s: float = 15.0
) -> PolicyPublished | None:
    """The policy in force: the last PolicyPublished on the `policy` topic whose version
    was new when published, or None."""
    return read_policies(settings, codec, timeout_s)[0]


def read_policies(
    settings: Settings, codec: Codec, timeout_s: float = 15.0
) -> tuple[PolicyPublished | None, PolicyHistory]:
    """The policy in force and every version published so far."""
    tp = TopicPartition(settings.topic("policy"), 0)
    # A throwaway group that never commits: reading the policy leaves no trace.
    consumer = Consumer(
        consumer_config(settings, f"{settings.topic_prefix}policy-cli-{uuid.uuid4()}")
    )
    try:
        _low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        history = PolicyHistory()
        if high <= 0:
            return None, history
        consumer.assign([TopicPartition(tp.topic, 0, 0)])
        latest: PolicyPublished | None = None
        deadline = time.monotonic() + timeout_s
        while consumer.position([tp])[0].offset < high:
            if time.monotonic() > deadline:
                raise KafkaException(f"{tp.topic}: not read to offset {high} within {timeout_s:g}s")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            # The processors' rule (PolicyHistory.admit); what they dead-letter, the
            # console skips, and the one before stays in force.
            try:
                event = codec.decode(msg.value(), msg.headers())
                if isinstance(event, PolicyPublished):
                    history.admit(msg.key(), event)
                    latest = event
            except (CodecError, PolicyInvalid):
                continue
        return latest, history
    finally:
        consumer.close()
