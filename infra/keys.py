"""Per-customer data keys in PostgreSQL (`data_keys`, migration 011), wrapped by the
deployment's master key; looked up a batch at a time, and destroyed by `casegate erase`.

Why wrapped: a copy of the database alone (a dump, a replica, a backup) then opens no
sealed value; the master key (``CASEGATE_DATA_MASTER_KEY``, or a 0600 file under
``<home>/secrets``) lives with the processes, never in the database. Why in PostgreSQL:
erasure must be one transaction that every reader sees at once, and the read side
already holds a connection there.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.secrets import event_id_key, secret_file
from infra.settings import Settings
from policy.sealing import DataKey, key_ids, ref_of, reveal

log = logging.getLogger(__name__)
T = TypeVar("T")

MASTER_KEY_FILE = "data_master_key"
# Customer refs are keyed hashes under a key derived from the event-id key: without it
# nobody can tell from `data_keys` (or an erasure event) which customer a row is.
_REF_LABEL = b"casegate customer refs v1"
_WRAP_NONCE = 12

# New keys and the live keys of every ref asked for, in one statement. A ref whose key
# another intake instance created between this statement's snapshot and its insert
# comes back from neither half; `KeyRing.keys_for` asks again for those.
_GET_OR_CREATE = """
WITH created AS (
    INSERT INTO data_keys (key_id, customer_ref, wrapped)
    SELECT * FROM unnest(%s::uuid[], %s::text[], %s::bytea[])
    ON CONFLICT (customer_ref) WHERE wrapped IS NOT NULL DO NOTHING
    RETURNING key_id, customer_ref, wrapped
)
SELECT key_id, customer_ref, wrapped FROM created
UNION ALL
SELECT key_id, customer_ref, wrapped FROM data_keys
WHERE customer_ref = ANY(%s::text[]) AND wrapped IS NOT NULL
"""


def master_key(settings: Settings) -> bytes:
    """The 32-byte key that wraps every data key."""
    if settings.data_master_key is not None:
        text = settings.data_master_key.get_secret_value()
    else:
        text = secret_file(settings.home / "secrets" / MASTER_KEY_FILE)
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(
            "the data master key must be 64 hex characters (AES-256): set "
            "CASEGATE_DATA_MASTER_KEY, or remove a damaged <home>/secrets/data_master_key "
            "only if no data key was ever wrapped with it"
        )
    return key


def ref_key(settings: Settings) -> bytes:
    return hmac.new(event_id_key(settings), _REF_LABEL, hashlib.sha256).digest()


def customer_id_ref(settings: Settings, customer_id: str) -> str:
    """The `customer_ref` of a customer id (as `policy.sealing.customer_ref` computes it)."""
    return ref_of(ref_key(settings), f"customer:{customer_id}")


class Wrapping:
    """The master key at work: data keys in and out of their wrapped form."""

    __slots__ = ("_aead",)

    def __init__(self, master: bytes) -> None:
        self._aead = AESGCM(master)  # once: a new customer's key costs a wrap, not a setup

    def wrap(self, key_id: bytes, secret: bytes) -> bytes:
        nonce = os.urandom(_WRAP_NONCE)
        return nonce + self._aead.encrypt(nonce, secret, key_id)

    def unwrap(self, key_id: bytes, wrapped: bytes) -> DataKey:
        secret = self._aead.decrypt(wrapped[:_WRAP_NONCE], wrapped[_WRAP_NONCE:], key_id)
        return DataKey(key_id, secret)


def keys_by_id(
    conn: psycopg.Connection, wrapping: Wrapping, ids: Iterable[bytes]
) -> dict[bytes, DataKey | None]:
    """The keys `ids` name, in one query: a destroyed key maps to None; an id this database
    never held is left out (its tokens read as unreadable)."""
    wanted = [uuid.UUID(bytes=i) for i in set(ids)]
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT key_id, wrapped FROM data_keys WHERE key_id = ANY(%s)", (wanted,)
    ).fetchall()
    return {
        key_id.bytes: None if wrapped is None else wrapping.unwrap(key_id.bytes, bytes(wrapped))
        for key_id, wrapped in rows
    }


@dataclass(frozen=True)
class Revealer:
    """Opens sealed values for display (console, `casegate trace`): every key a value needs
    in one query, read at the time of display, so an erasure shows at once."""

    wrapping: Wrapping

    @classmethod
    def of(cls, settings: Settings) -> Revealer:
        return cls(Wrapping(master_key(settings)))

    def reveal(self, conn: psycopg.Connection, value: T) -> T:
        """`value` (rows, maps, lists, strings) with its tokens opened, or `[erased]`."""
        ids = key_ids(value)
        if not ids:
            return value
        opened: T = reveal(value, keys_by_id(conn, self.wrapping, ids))
        return opened


def erase_customer(conn: psycopg.Connection, customer_ref: str, actor: str) -> list[str]:
    """Destroy every live key of `customer_ref` (the wrapped bytes are overwritten with
    NULL); returns the ids destroyed, none if the customer has no live key."""
    rows = conn.execute(
        "UPDATE data_keys SET wrapped = NULL, erased_at = now(), erased_by = %s "
        "WHERE customer_ref = %s AND wrapped IS NOT NULL RETURNING key_id",
        (actor, customer_ref),
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


class KeyRing:
    """Intake's data keys: each batch's missing refs looked up (and created) in one
    statement, then kept for `cache_s`, so the hot path makes no round trip per event."""

    def __init__(self, conninfo: str, wrapping: Wrapping, cache_s: float) -> None:
        self._conninfo = conninfo
        self._wrapping = wrapping
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, DataKey]] = {}
        self._conn: psycopg.Connection | None = None

    def keys_for(self, refs: Iterable[str]) -> Mapping[str, DataKey]:
        now = time.monotonic()
        found: dict[str, DataKey] = {}
        missing: list[str] = []
        for ref in set(refs):
            hit = self._cache.get(ref)
            if hit is not None and now - hit[0] < self._cache_s:
                found[ref] = hit[1]
            else:
                missing.append(ref)
        for _ in range(3):
            if not missing:
                break
            for ref, key in self._get_or_create(missing).items():
                found[ref] = key
                self._cache[ref] = (now, key)
            missing = [r for r in missing if r not in found]
        if missing:
            raise RuntimeError(f"no data key could be created for {len(missing)} customer(s)")
        if len(self._cache) > 100_000:  # bounded memory: drop what is stale
            self._cache = {r: v for r, v in self._cache.items() if now - v[0] < self._cache_s}
        return found

    def _get_or_create(self, refs: list[str]) -> dict[str, DataKey]:
        ids = [uuid.uuid4() for _ in refs]
        secrets = {i.bytes: os.urandom(32) for i in ids}
        wrapped = [self._wrapping.wrap(i.bytes, secrets[i.bytes]) for i in ids]
        try:
            conn = self._connection()
            rows = conn.execute(_GET_OR_CREATE, (ids, refs, wrapped, refs)).fetchall()
        except psycopg.OperationalError:
            self.close()  # reconnect on the next batch; this one is redone
            raise
        # The keys this statement created are at hand; only the others need unwrapping.
        return {
            ref: DataKey(key_id.bytes, secrets[key_id.bytes])
            if key_id.bytes in secrets
            else self._wrapping.unwrap(key_id.bytes, bytes(blob))
            for key_id, ref, blob in rows
        }

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
