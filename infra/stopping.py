"""How a long-running worker process is asked to stop: one flag its signals set."""

from __future__ import annotations

import signal
import threading


def stop_on_signals() -> threading.Event:
    """A flag SIGTERM and SIGINT set (installed for this process), which a worker's loop
    checks between batches: it finishes the batch in hand, then stops, so a signal never
    leaves a half-written batch."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop
