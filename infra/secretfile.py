"""Secrets on disk: created readable by their owner only from the first byte.

Writing a file and chmod-ing it afterwards leaves a window in which it is readable under
the process umask (often 0644); opening it with mode 0600 and O_EXCL leaves none, and
refuses to write through a file (or symlink) someone else put there first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Create `path` (mode 0600, its folder 0700) holding `text`; fails if it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def generated_secret(folder: Path, name: str) -> str:
    """The secret `name` kept in `folder`, generated (random, URL-safe) on first use."""
    path = folder / name
    # Generated before, or by a process racing us: read the one that won.
    with contextlib.suppress(FileExistsError):
        write_private(path, secrets.token_urlsafe(24))
    return path.read_text(encoding="utf-8").strip()
