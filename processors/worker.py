"""Entry point of one processor process: ``python -m processors.worker NAME``."""

from __future__ import annotations

import sys

from mode import Worker

from infra.settings import Settings
from schemas.codec import Codec

PROCESSORS = ("intake",)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in PROCESSORS:
        sys.exit(f"usage: python -m processors.worker {{{'|'.join(PROCESSORS)}}}")
    settings = Settings()
    codec = Codec.load()
    from processors import intake

    app = intake.build(settings, codec)
    # mode's Worker owns the event loop and turns SIGTERM/SIGINT into a clean shutdown.
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
