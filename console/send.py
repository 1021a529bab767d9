"""Sending one event and waiting until the broker has it (acks=all), for the writes that
must fail loudly rather than be queued: a policy, an erasure, an access review."""

from __future__ import annotations

from confluent_kafka import KafkaException

from infra.kafka import make_producer
from infra.settings import Settings
from schemas.codec import Codec
from schemas.events import Event


def send_acknowledged(
    settings: Settings, codec: Codec, event: Event, key: bytes, *, not_sent: str = ""
) -> None:
    """Produce `event` alone on its topic and wait until the broker has it (acks=all);
    KafkaException otherwise (worded `not_sent`, default "<event type> not sent"), so the
    caller can undo what the event was to record."""
    value, encoded_headers = codec.encode(event)
    headers: list[tuple[str, str | bytes | None]] = list(encoded_headers)
    producer = make_producer(settings)
    failures: list[str] = []
    producer.produce(
        settings.topic(event.topic),
        key=key,
        value=value,
        headers=headers,
        on_delivery=lambda e, _m: failures.append(str(e)) if e else None,
    )
    if producer.flush(30) or failures:
        raise KafkaException(
            f"{not_sent or f'{event.event_type} not sent'}: "
            f"{'; '.join(failures) or 'flush timed out'}"
        )
