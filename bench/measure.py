"""Figures (every run kept, reported as median / min / max, since machines are noisy),
ratios to baselines of the same run, and the targets they are held to."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Figure:
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.runs, default=float("nan")),
            "max": max(self.runs, default=float("nan")),
            "runs": self.runs,
        }


def repeat(name: str, unit: str, runs: int, once: Callable[[int], float]) -> Figure:
    """Call ``once(run_index)`` ``runs`` times; each call returns one value."""
    figure = Figure(name, unit)
    for i in range(runs):
        figure.runs.append(once(i))
    return figure


class Figures(dict[str, Figure]):
    """Figures by name; ``add`` appends one run's value, creating the figure if needed."""

    def add(self, name: str, unit: str, value: float) -> None:
        self.setdefault(name, Figure(name, unit)).runs.append(value)


@dataclass(frozen=True)
class Target:
    """``value`` compared with ``limit``: ``>=`` for rates, ``<=`` for latencies."""

    name: str
    op: str
    limit: float

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.limit if self.op == ">=" else value <= self.limit


def growth(samples: list[tuple[float, int]], warm_s: float, end_s: float) -> tuple[float, float]:
    """RSS (kB) at ``warm_s`` and its growth (kB) by ``end_s``, from (seconds, kB) samples.

    The end is the mean of the samples in the last tenth of the window, so one sample
    caught mid-collection does not decide.
    """
    inside = [(t, kb) for t, kb in samples if warm_s <= t <= end_s]
    if len(inside) < 2:
        return float("nan"), float("nan")
    start_kb = inside[0][1]
    tail_from = end_s - (end_s - warm_s) / 10
    tail = [kb for t, kb in inside if t >= tail_from] or [inside[-1][1]]
    return float(start_kb), statistics.fmean(tail) - start_kb
