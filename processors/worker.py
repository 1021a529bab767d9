"""Entry point of one processor process: ``python -m processors.worker NAME``."""

from __future__ import annotations

import importlib
import sys

from mode import Worker

from infra.settings import Settings
from processors.app import ensure_changelogs
from schemas.codec import Codec

# Processor name -> module with `build(settings, codec) -> faust.App`.
PROCESSORS: dict[str, str] = {
    "intake": "processors.intake",
    "recommend": "processors.recommend.processor",
    "guard": "processors.guard",
    "approve": "processors.approve",
    "execute": "processors.execute",
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in PROCESSORS:
        sys.exit(f"usage: python -m processors.worker {{{'|'.join(PROCESSORS)}}}")
    settings = Settings()
    codec = Codec.load()
    app = importlib.import_module(PROCESSORS[args[0]]).build(settings, codec)
    ensure_changelogs(settings, app)
    # mode's Worker owns the event loop and turns SIGTERM/SIGINT into a clean shutdown.
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
