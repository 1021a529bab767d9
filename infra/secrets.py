"""The deployment's secrets kept on disk (generated passwords, the broker's credentials,
the event-id key): created owner-only (0600) from their first byte.

A secret file is written under a temporary name opened with mode 0600 and ``O_EXCL``,
then linked (a generated secret) or renamed (one written whole) into place: no other
user can ever read it (no chmod after the write, which leaves a window), and two
processes generating one at once agree on one value (the second link fails and that
process reads the first one's file).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from hashlib import sha256
from pathlib import Path

from infra.settings import Settings
from schemas import events

EVENT_ID_KEY_FILE = "event_id_key"
# Anchors are signed with a key derived from the event-id key, not with that key itself:
# one secret, two purposes that can never be mistaken for one another.
_ANCHOR_LABEL = b"casegate audit anchors v1"


def _staged(path: Path, text: str) -> Path:
    """A new file beside ``path`` holding ``text``, mode 0600 from its creation (``O_EXCL``:
    never a file someone else put there), for the caller to link or rename into place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return staging


def secret_file(path: Path, generate: int = 32) -> str:
    """The secret stored at ``path``, created (``generate`` random bytes, hex) if absent."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    staging = _staged(path, secrets.token_hex(generate))
    try:
        # The first process to link wins; any other reads what it linked.
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600 from its creation (never widened, then narrowed).

    Renamed over `path` once written, so a reader sees the old or the new content, never a
    half-written one, and an existing file's mode cannot leak in.
    """
    staging = _staged(path, text)
    try:
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def new_password() -> str:
    """A random password (URL-safe characters: quotable in JAAS and SCRAM arguments)."""
    return secrets.token_urlsafe(24)


def event_id_key(settings: Settings) -> bytes:
    """The key derived event ids are computed with: ``CASEGATE_EVENT_ID_KEY`` when set
    (every host of a deployment sets the same), else ``<home>/secrets/event_id_key``,
    generated on first use for the local stack."""
    if settings.event_id_key is not None:
        return settings.event_id_key.get_secret_value().encode()
    return secret_file(settings.home / "secrets" / EVENT_ID_KEY_FILE).encode()


def install_event_id_key(settings: Settings) -> bytes:
    """Install this deployment's key for every id the process derives; returns it."""
    key = event_id_key(settings)
    events.install_event_id_key(key)
    return key


def anchor_key(settings: Settings) -> bytes:
    """The key that signs the audit chain's anchors (see ``projections.anchors``)."""
    return hmac.new(event_id_key(settings), _ANCHOR_LABEL, sha256).digest()
