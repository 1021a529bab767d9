"""`python -m bench.variant VARIANT NAME`: a faust processor with one lever changed, for
measuring that lever alone (`python -m bench.levers`). Nothing here is used in production.

Variants:
- `baseline`: processors.worker unchanged;
- `uvloop`: the uvloop event loop instead of asyncio's;
- `linger5`: faust's producer lingers 5 ms to batch sends (default 0);
- `commit05`: offsets committed every 0.5 s instead of faust's 2.8 s;
- `confluent`: faust's confluent-kafka transport instead of aiokafka;
- `oldpoll` (read models): the runner's consume as before this bench's fix, which waited
  up to the poll timeout (250 ms) whenever fewer than a full batch of records was ready;
- `noackwait`: UNSAFE what-if — events are sent without waiting for their acknowledgement
  before the state that records them moves. It breaks processors.emitter's ordering rule
  (a crash can lose a decision whose state says it was made); measured only to show what
  the per-record wait costs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

import faust

from processors import app as app_module
from processors import emitter as emitter_module
from processors import worker


def _uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _with_conf(**conf: Any) -> Callable[[], None]:
    def patch() -> None:
        original = app_module.faust.App

        def app(*args: Any, **kwargs: Any) -> faust.App:
            return original(*args, **{**kwargs, **conf})

        app_module.faust.App = app  # type: ignore[assignment,misc]

    return patch


def _confluent() -> None:
    app_module.faust_broker = lambda settings: ";".join(  # type: ignore[assignment]
        f"confluent://{host}" for host in settings.bootstrap_servers.split(",")
    )


def _no_ack_wait() -> None:
    async def emit(self: emitter_module.Emitter, events: Sequence[Any]) -> None:
        for e in events:
            value, headers = self._codec.encode(e)
            await self._topics[e.topic].send(key=e.case_id.encode(), value=value, headers=headers)

    emitter_module.Emitter.emit = emit  # type: ignore[method-assign]


def _old_poll() -> None:
    from confluent_kafka import Consumer

    from projections import worker as projections_worker

    class WaitingConsumer(Consumer):
        def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
            if num_messages > 1 and timeout == 0:  # the runner's "what is already there"
                timeout = 0.25
            return super().consume(num_messages, timeout)

    def make_consumer(settings: Any, group_id: str, **overrides: Any) -> Consumer:
        from infra.kafka import consumer_config

        return WaitingConsumer(consumer_config(settings, group_id, **overrides))

    projections_worker.make_consumer = make_consumer  # type: ignore[assignment]


VARIANTS: dict[str, Callable[[], None]] = {
    "baseline": lambda: None,
    "uvloop": _uvloop,
    "linger5": _with_conf(producer_linger=0.005),
    "commit05": _with_conf(broker_commit_interval=0.5),
    "confluent": _confluent,
    "noackwait": _no_ack_wait,
    "oldpoll": _old_poll,
}


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: python -m bench.variant {{{'|'.join(VARIANTS)}}} PROCESSOR")
    VARIANTS[sys.argv[1]]()
    if sys.argv[2] == "readmodels":
        from projections import worker as projections_worker

        projections_worker.main([sys.argv[2]])
    else:
        worker.main([sys.argv[2]])


if __name__ == "__main__":
    main()
