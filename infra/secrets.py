"""Generated secrets kept under the casegate home, readable by their owner only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


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
