"""Turning a record a consumer cannot use into a ``DeadLettered`` event (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

from schemas.codec import Headers
from schemas.events import DeadLettered, derived_event_id, utc_now


def dead_letter(
    *,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
    error: Exception,
    case_id: str = "",
) -> DeadLettered:
    reason = _text(str(error) or type(error).__name__)
    return DeadLettered(
        # Deterministic: a consumer that re-reads the same bad record after a crash produces
        # the same event, and readers drop the repeat.
        event_id=derived_event_id(f"{topic}:{partition}:{offset}", f"DeadLettered:{consumer}"),
        case_id=case_id or _case_id_from_key(key),
        occurred_at=utc_now(),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        consumer=consumer,
        key=key,
        raw=value or b"",
        headers=_header_map(headers),
        reason=reason,
        error_class=type(error).__name__,
    )


def _case_id_from_key(key: bytes | None) -> str:
    if not key:
        return ""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _header_map(headers: Headers | None) -> dict[str, bytes]:
    """Headers as the event stores them: one value per key, bytes, never None."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return {_text(k): _text(v).encode() if isinstance(v, str) else (v or b"") for k, v in pairs}


def _text(value: str) -> str:
    """`value` as text Avro can carry: a lone surrogate (from a client that decoded bad
    bytes leniently) is escaped, since a dead letter that cannot be encoded would stop
    the consumer on the very record it was meant to set aside."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
