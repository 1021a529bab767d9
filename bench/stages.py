"""Processors under load, measured from outside: each stage alone (on the processors' loop
and in the plain baseline loop) and the whole pipeline intake → recommend → guard → read
models, with one or more workers per processor.

Input is written to the sandbox before anything starts (policy, resolved history, then
the cases), so each run drains a backlog: its sustained rate is the most it can do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.procs import Child, Sampler, running
from bench.progress import DecidedCounter, Progress, TopicCounter, wait_for
from infra.settings import Settings

# Called with the running children and the sustained rate the backlog drained at.
Then = Callable[[list[Child], float], None]


@dataclass
class Run:
    """One measured run: sustained rate, progress and the children (memory, CPU)."""

    rate: float
    progress: Progress
    children: list[Child]
    # Per child: its clock (seconds since it started) when the progress clock started.
    offset_s: dict[str, float]

    def at(self, child: Child, fraction: float) -> float:
        """When, on ``child``'s clock, ``fraction`` of the backlog was done."""
        return self.offset_s[child.name] + self.progress.crossing(fraction)

    def cpu_ms_per_record(self) -> float:
        """CPU all children spent per record while the backlog drained between its 10 %
        and 90 % marks: the steady cost, without start-up (imports, joins, recovery)."""
        total = sum(c.cpu_between(self.at(c, 0.1), self.at(c, 0.9)) for c in self.children)
        return total * 1000 / (0.8 * self.progress.expect)


def _run(
    settings: Settings,
    names: tuple[str, ...],
    count: Callable[[], int],
    expect: int,
    timeout_s: float,
    then: Then | None = None,
) -> Run:
    with running(settings, *names) as children, Sampler(children):

        def alive() -> None:
            for child in children:
                child.check_alive()

        began = time.monotonic()
        progress = wait_for(count, expect, timeout_s, interval_s=0.1, alive=alive)
        if then is not None:
            then(children, progress.sustained_rate())
    return Run(
        progress.sustained_rate(), progress, children, {c.name: began - c.started for c in children}
    )


def stage(settings: Settings, component: str, output: str, expect: int, timeout_s: float) -> Run:
    """Start ``component`` alone and wait for ``expect`` records on topic ``output``."""
    counter = TopicCounter(settings, output)
    try:
        return _run(settings, (component,), counter, expect, timeout_s)
    finally:
        counter.close()


def pipeline(
    settings: Settings,
    expect: int,
    timeout_s: float,
    then: Then | None = None,
    workers: int = 1,
) -> Run:
    """intake, recommend, guard (each with `workers` instances in its consumer group) and
    the read models together, until ``expect`` decisions are committed in PostgreSQL (rows of
    ``recommendation_facts`` with their outcome); then ``then`` runs with the processes still up,
    given the rate just measured (the latency runs)."""
    names = ["readmodels"] + [
        f"{name}#{i}" if i else name
        for name in ("intake", "recommend", "guard")
        for i in range(workers)
    ]
    counter = DecidedCounter(settings)
    try:
        return _run(settings, tuple(names), counter, expect, timeout_s, then)
    finally:
        counter.close()
