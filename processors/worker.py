"""Entry point of one processor process: ``python -m processors.worker NAME [--instance N]``.

Every processor runs on the same loop (`processors.loop`); NAME picks its handler. Run
more instances of a processor (``--instance 1``, ``2``…) to share its partitions: each
instance needs its own number, which names its transactional producer, so a restarted
instance fences the one it replaces.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from prometheus_client import CollectorRegistry

from infra.kafka_auth import as_principal
from infra.secrets import install_event_id_key
from infra.settings import Settings
from infra.stopping import stop_on_signals
from infra.telemetry import serve_metrics, setup_logging
from processors.handler import Handler
from processors.loop import Loop
from schemas.codec import Codec

# Processor name -> module with `build(settings, codec) -> Handler`.
PROCESSORS: dict[str, str] = {
    "intake": "processors.intake",
    "recommend": "processors.recommend.processor",
    "guard": "processors.guard",
    "approve": "processors.approve",
    "execute": "processors.execute",
    "rollout": "processors.rollout",
}


def build_handler(name: str, settings: Settings, codec: Codec) -> Handler:
    handler: Handler = importlib.import_module(PROCESSORS[name]).build(settings, codec)
    return handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m processors.worker")
    parser.add_argument("name", choices=sorted(PROCESSORS))
    parser.add_argument(
        "--instance",
        type=int,
        default=None,
        help="this worker's number among the instances of the processor "
        "(default: CASEGATE_INSTANCE, else 0)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # The processor's name is its principal on the broker (infra.acl).
    settings = as_principal(Settings(), args.name)
    install_event_id_key(settings)
    if args.instance is None:
        args.instance = settings.instance
    setup_logging(settings, f"{args.name}-{args.instance}")
    codec = Codec.load()
    registry = CollectorRegistry()
    serve_metrics(settings, args.name, args.instance, registry)
    handler = build_handler(args.name, settings, codec)
    loop = Loop(settings, codec, handler, args.instance, registry)
    loop.run(stop_on_signals())


if __name__ == "__main__":
    main()
