"""Repeat a measurement, keep every run, report median / min / max (machines are noisy)."""

from __future__ import annotations

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
