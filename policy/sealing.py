"""Personal data sealed under its customer's data key, so that destroying the key erases it
wherever the sealed bytes went (crypto-shredding). Pure: no database, no Kafka.

Intake seals each upstream event before anything else reads it (`seal_event`): every
value of the `customer` map (but the fields configured as not personal, such as `tier`)
and, inside free text, every email address, card number and phone number, and every
verbatim occurrence of one of the case's own customer values (a name in the description).
Each sealed value becomes a token ``⟦pii:<label>:<base64url(key id | nonce | AES-GCM
ciphertext and tag)>⟧`` in place of the plaintext, so the events keep their schema.

Sealing is deterministic: the nonce is an HMAC of (event id, field, label, plaintext)
under a key derived from the data key. Intake must produce the same bytes for the same
input (a batch decided again after an aborted transaction, an upstream redelivery that
the read models tell from a collision by its content); and distinct plaintexts under one
key get distinct nonces, which is all AES-GCM needs. Equal values sealed in two events
give unrelated tokens (the event id is in the nonce), so tokens do not link cases.

Readers: `conceal` turns each token into ``[<label>]`` (what a model sees: the same
placeholder redaction writes), `reveal` opens tokens with the keys still held and shows
``[erased]`` where the key was destroyed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from policy.redaction import BUILTIN_PATTERNS, EmailPattern
from schemas.events import CaseOpened, CaseReopened, CaseUpdated, Event

__all__ = [
    "ERASED",
    "UNREADABLE",
    "DataKey",
    "conceal",
    "customer_ref",
    "key_ids",
    "reveal",
    "seal_event",
    "seal_text",
]

MARK = "⟦pii:"
TOKEN = re.compile(r"⟦pii:([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9_-]{60,})⟧")
ERASED = "[erased]"  # the value's key was destroyed (`casegate erase`)
UNREADABLE = "[unreadable]"  # no such key here, or a token that does not open
KEY_ID_BYTES = 16
NONCE_BYTES = 12
# Customer values shorter than this are not looked for inside free text ("Al" would
# seal half the words of a description); the map value itself is always sealed.
MIN_LITERAL_CHARS = 3
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NONCE_LABEL = b"casegate sealing nonces v1"

Finder = Callable[[str], Iterable[tuple[int, int]]]
# What every card and phone number holds (9+ digits, at most two separators between two):
# one scan tells whether the two patterns need to run at all.
_NINE_DIGITS = re.compile(r"\d(?:[ ().+-]{0,2}\d){8}")
_NUMBERS = ("card", "phone")


def _regex_spans(pattern: re.Pattern[str]) -> Finder:
    return lambda text: ((m.start(), m.end()) for m in pattern.finditer(text))


# The personal patterns of redaction, in its order (card before phone). Fixed, not the
# policy's: sealed events are immutable, while the policy's custom patterns change (and
# name business ids, which guardrails bind parameters to, not personal data).
_FINDERS: tuple[tuple[str, Finder], ...] = (
    ("email", cast(EmailPattern, BUILTIN_PATTERNS["email"]).spans),
    ("card", _regex_spans(cast(re.Pattern[str], BUILTIN_PATTERNS["card"]))),
    ("phone", _regex_spans(cast(re.Pattern[str], BUILTIN_PATTERNS["phone"]))),
)


class DataKey:
    """One customer's data key: seals and opens that customer's values."""

    __slots__ = ("_aead", "_nonce_key", "key_id")

    def __init__(self, key_id: bytes, secret: bytes) -> None:
        if len(key_id) != KEY_ID_BYTES or len(secret) != 32:
            raise ValueError("a data key is a 16-byte id and a 32-byte AES-256 key")
        self.key_id = key_id
        self._aead = AESGCM(secret)
        self._nonce_key = hmac.new(secret, _NONCE_LABEL, hashlib.sha256).digest()

    def seal(self, label: str, context: bytes, plaintext: str) -> str:
        """The token for `plaintext`, found at `context` (event id and field)."""
        data = plaintext.encode()
        aad = self.key_id + label.encode()
        nonce = hmac.digest(self._nonce_key, context + b"\0" + aad + b"\0" + data, "sha256")
        nonce = nonce[:NONCE_BYTES]
        blob = self.key_id + nonce + self._aead.encrypt(nonce, data, aad)
        return f"{MARK}{label}:{base64.urlsafe_b64encode(blob).rstrip(b'=').decode()}⟧"

    def open(self, label: str, blob: bytes) -> str:
        """The plaintext of a token's blob; raises InvalidTag if it is not this key's."""
        nonce = blob[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES]
        sealed = blob[KEY_ID_BYTES + NONCE_BYTES :]
        return self._aead.decrypt(nonce, sealed, self.key_id + label.encode()).decode()


def customer_ref(ref_key: bytes, event: CaseOpened) -> str:
    """Whose key seals the case: a keyed hash of `customer.id` (so the key table holds no
    customer id), or of the case itself when upstream sent no customer id."""
    customer_id = event.customer.get("id")
    name = f"customer:{customer_id}" if customer_id else f"case:{event.case_id}"
    return ref_of(ref_key, name)


def ref_of(ref_key: bytes, name: str) -> str:
    return hmac.new(ref_key, name.encode(), hashlib.sha256).hexdigest()


def _label(kind: str) -> str:
    return kind if _LABEL.fullmatch(kind) else "customer"


def _spans(text: str, literals: Iterable[tuple[str, str]]) -> list[tuple[int, int, str]]:
    """Personal spans of `text`, none overlapping: the patterns in redaction's order
    first (so a model sees the very placeholders redaction writes), then the case's own
    customer values."""
    found: list[tuple[int, int, str]] = []

    def take(start: int, end: int, label: str) -> None:
        if all(end <= s or start >= e for s, e, _ in found):
            found.append((start, end, label))

    numbers = _NINE_DIGITS.search(text) is not None
    for label, finder in _FINDERS:
        if label in _NUMBERS and not numbers:
            continue  # no run of 9 digits: neither a card nor a phone number (hot path)
        for start, end in finder(text):
            take(start, end, label)
    for label, value in literals:
        at = text.find(value)
        while at >= 0:
            take(at, at + len(value), label)
            at = text.find(value, at + len(value))
    found.sort()
    return found


def seal_text(
    key: DataKey, context: bytes, text: str, literals: Iterable[tuple[str, str]] = ()
) -> str:
    """`text` with every personal span (see `_spans`) replaced by its token."""
    spans = _spans(text, literals)
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end, label in spans:
        out += (text[last:start], key.seal(label, context, text[start:end]))
        last = end
    out.append(text[last:])
    return "".join(out)


def seal_event(event: Event, key: DataKey, clear_fields: frozenset[str]) -> Event:
    """`event` with its personal data sealed under `key`; `event` itself if it has none.

    `clear_fields`: customer fields that are not personal (a service tier) and stay
    readable, to models and routing alike.
    """
    at = event.event_id.encode() + b"/"
    if isinstance(event, CaseOpened):
        personal = {k: v for k, v in event.customer.items() if k not in clear_fields and v}
        labels = {k: _label(f"customer.{k}") for k in personal}
        literals = [
            (labels[k], v) for k, v in personal.items() if len(v.strip()) >= MIN_LITERAL_CHARS
        ]
        subject = seal_text(key, at + b"subject", event.subject, literals)
        description = seal_text(key, at + b"description", event.description, literals)
        if not personal and subject is event.subject and description is event.description:
            return event
        return replace(
            event,
            customer={
                k: key.seal(labels[k], at + b"customer." + k.encode(), v) if k in personal else v
                for k, v in event.customer.items()
            },
            subject=subject,
            description=description,
        )
    if isinstance(event, CaseUpdated):
        changes: dict[str, Any] = {}
        for name, value in event.changes.items():
            field = name.removeprefix("customer.")
            where = at + b"changes." + name.encode()
            if not isinstance(value, str) or not value:
                changes[name] = value
            elif field != name and field not in clear_fields:
                changes[name] = key.seal(_label(name), where, value)
            else:
                changes[name] = seal_text(key, where, value)
        note = None if event.note is None else seal_text(key, at + b"note", event.note)
        sealed_update = replace(event, changes=changes, note=note)
        return sealed_update if sealed_update != event else event
    if isinstance(event, CaseReopened):
        reason = seal_text(key, at + b"reason", event.reason)
        return event if reason == event.reason else replace(event, reason=reason)
    return event


def _blob(encoded: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def key_ids(value: object) -> set[bytes]:
    """The ids of the keys the tokens anywhere in `value` (strings, maps, lists) need."""
    found: set[bytes] = set()
    for text in _strings(value):
        if MARK in text:
            for match in TOKEN.finditer(text):
                blob = _blob(match[2])
                if blob is not None and len(blob) > KEY_ID_BYTES + NONCE_BYTES:
                    found.add(blob[:KEY_ID_BYTES])
    return found


def _open(match: re.Match[str], keys: Mapping[bytes, DataKey | None]) -> str:
    blob = _blob(match[2])
    if blob is None or len(blob) <= KEY_ID_BYTES + NONCE_BYTES:
        return UNREADABLE
    key_id = blob[:KEY_ID_BYTES]
    if key_id not in keys:
        return UNREADABLE
    key = keys[key_id]
    if key is None:
        return ERASED
    try:
        return key.open(match[1], blob)
    except (InvalidTag, UnicodeDecodeError):
        return UNREADABLE


def reveal(value: Any, keys: Mapping[bytes, DataKey | None]) -> Any:
    """`value` (a string, or JSON-like maps and lists) with every token opened: its
    plaintext, ``[erased]`` where `keys` maps its key id to None (destroyed), or
    ``[unreadable]`` where the id is unknown or the token does not open."""
    if isinstance(value, str):
        return TOKEN.sub(lambda m: _open(m, keys), value) if MARK in value else value
    if isinstance(value, Mapping):
        return {k: reveal(v, keys) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v, keys) for v in value]
    return value


def conceal(text: str) -> str:
    """`text` with each token as ``[<label>]``: what a model may see of sealed data."""
    return TOKEN.sub(lambda m: f"[{m[1]}]", text) if MARK in text else text
