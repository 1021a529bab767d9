"""Keep the current version of event schemas readable before changing them.

    python -m schemas.snapshot CaseOpened [OtherEvent ...]

writes `schemas/history/<EventType>.v<N>.avsc` (next free N) with the current schema
made self-contained (shared types inlined), so the fingerprint old producers used keeps
resolving after `_types.avsc` or the event file evolves. Run it before editing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.registry import (
    BUNDLED_DIR,
    HISTORY_DIR,
    HISTORY_NAME,
    load_schema_set,
    read_history_schema,
)


def snapshot(event_type: str, directory: Path = BUNDLED_DIR, history: Path = HISTORY_DIR) -> Path:
    """Write the current schema of `event_type` into `history`; return the new file."""
    current = load_schema_set(directory).current.get(event_type)
    if current is None:
        raise SystemExit(f"no schema for {event_type} in {directory}")
    versions = []
    for path in history.glob(f"{event_type}.v*.avsc"):
        match = HISTORY_NAME.match(path.name)
        if match is None or match["event_type"] != event_type:
            continue
        if read_history_schema(event_type, path).fingerprint == current.fingerprint:
            raise SystemExit(f"{event_type}: current version already kept as {path}")
        versions.append(int(match["version"]))
    path = history / f"{event_type}.v{max(versions, default=0) + 1}.avsc"
    history.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current.standalone, indent=2, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for event_type in argv:
        print(snapshot(event_type))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
