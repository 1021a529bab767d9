"""Writing demo events as JSON Lines (the contract's JSON form, one event per line)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from schemas.events import Event
from schemas.jsonform import dumps


def write_jsonl(
    events: Iterable[Event], path: Path, advance: Callable[[int], None] = lambda n: None
) -> int:
    """Write `events` to `path` (replacing it) and return how many were written.

    The file is written beside its target and renamed into place, so a reader (or an
    interrupted run) never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    try:
        with partial.open("wb") as fh:
            for event in events:
                fh.write(dumps(event) + b"\n")
                count += 1
                advance(1)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count
