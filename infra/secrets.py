"""The deployment's secrets kept on disk (generated passwords, the broker's credentials,
the event-id key): created owner-only (0600) from their first byte.

A secret file is written under a temporary name opened with mode 0600 and ``O_EXCL``,
then linked into place: no other user can ever read it (no chmod after the write, which
leaves a window), and two processes starting at once agree on one value (the second
link fails and that process reads the first one's file).
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


def secret_file(path: Path, generate: int = 32) -> str:
    """The secret stored at ``path``, created (``generate`` random bytes, hex) if absent."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(generate))
            f.flush()
            os.fsync(f.fileno())
        # The first process to link wins; any other reads what it linked.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600 from its creation (never widened, then narrowed).

    Written to a fresh file beside it and renamed over it, so a reader sees the old or the
    new content, never a half-written one, and an existing file's mode cannot leak in.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
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
