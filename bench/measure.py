"""Figures (every run kept, reported as median / min / max, since machines are noisy),
ratios to baselines of the same run, and the targets they are held to."""

from __future__ import annotations

import math
import statistics
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


class Figures(dict[str, Figure]):
    """Figures by name; ``add`` appends one run's value, creating the figure if needed."""

    def add(self, name: str, unit: str, value: float) -> None:
        self.setdefault(name, Figure(name, unit)).runs.append(value)

    def merge(self, other: Figures) -> None:
        """Take one completed run's figures (a run broken half-way adds nothing)."""
        for f in other.values():
            for value in f.runs:
                self.add(f.name, f.unit, value)


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


# A process's memory is flat when, between 30 % and 100 % of its work, it grew by less than
# this per unit of work (a case, or an event for the replay). State kept forever per case
# shows as a steady slope (a few hundred bytes per case is a gigabyte after some millions),
# however small next to the process's size in one run; allocator noise stays well below it.
FLAT_BYTES_PER_UNIT = 20
# The growth window: from this fraction of the work to its end.
WARM_FRACTION = 0.3


def bytes_per_unit(grew_kb: float, units: float) -> float:
    """Growth per unit of work over the window after warm-up, in bytes."""
    return grew_kb * 1024 / ((1 - WARM_FRACTION) * units)


@dataclass
class Trend:
    """One process's memory growth after warm-up, in bytes per unit of work, one per run."""

    per: str  # what a unit of work is: "case" or "event"
    units: int  # units handled in one run
    bytes_per_unit: list[float] = field(default_factory=list)
    # Per run, RSS (MB) when 10 %, 20 %, … 100 % of the work was done: the shape, which
    # tells a bounded buffer filling up from state that grows without end.
    rss_mb_by_tenth: list[list[float]] = field(default_factory=list)

    @property
    def flat(self) -> bool | None:
        """None when a run had too few samples to tell (a run of a second or two): unknown
        is neither a pass nor a miss."""
        if not self.bytes_per_unit or any(math.isnan(b) for b in self.bytes_per_unit):
            return None
        return all(b <= FLAT_BYTES_PER_UNIT for b in self.bytes_per_unit)

    @property
    def worst(self) -> float:
        """The largest growth of the runs that could be measured (NaN if none could)."""
        known = [b for b in self.bytes_per_unit if not math.isnan(b)]
        return max(known, default=float("nan"))

    def as_dict(self) -> dict[str, object]:
        return {
            "per": self.per,
            "worst_bytes_per_unit": self.worst,
            "units": self.units,
            "bytes_per_unit": self.bytes_per_unit,
            "limit_bytes_per_unit": FLAT_BYTES_PER_UNIT,
            "flat": self.flat,
            "rss_mb_by_tenth": self.rss_mb_by_tenth,
        }


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


def rss_at(samples: list[tuple[float, int]], at_s: float) -> float:
    """RSS (kB) of the last sample taken at or before ``at_s`` (the first one if none was)."""
    before = [kb for t, kb in samples if t <= at_s]
    if before:
        return float(before[-1])
    return float(samples[0][1]) if samples else float("nan")
