"""Geometry of the metrics page's charts (pure). Templates draw it as inline SVG, so every
label passes through Jinja2's autoescaping and no chart library or script is needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Format = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    text: str  # the formatted value, or "no data"
    y: float
    width: float


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    label_width: int
    bar_height: int
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class LineChart:
    width: int
    height: int
    left: int
    bottom: float
    path: str  # SVG path data: numbers and M/L only
    points: tuple[Point, ...]
    ticks: tuple[Tick, ...]


def bar_chart(
    items: Sequence[tuple[str, float | None]],
    fmt: Format,
    width: int = 640,
    label_width: int = 180,
    bar_height: int = 22,
) -> BarChart:
    """Horizontal bars, one row per segment, scaled to the largest value."""
    top = max((v for _, v in items if v is not None), default=0.0) or 1.0
    room = width - label_width - 90  # space on the right for the value text
    bars = tuple(
        Bar(
            label=label,
            text="no data" if value is None else fmt(value),
            y=i * (bar_height + 8),
            width=0.0 if value is None else max(1.0, room * value / top),
        )
        for i, (label, value) in enumerate(items)
    )
    height = max(1, len(bars)) * (bar_height + 8)
    return BarChart(width, height, label_width, bar_height, bars)


def time_series(
    points: Sequence[tuple[str, float | None]],
    fmt: Format,
    width: int = 640,
    height: int = 200,
    left: int = 56,
) -> LineChart:
    """A line over the days that have a value (gaps are skipped, not drawn as zero)."""
    top_pad, bottom_pad = 12.0, 28.0
    known = [v for _, v in points if v is not None]
    top = max(known, default=0.0) or 1.0
    plot_h = height - top_pad - bottom_pad
    step = (width - left - 16) / max(1, len(points) - 1)
    drawn: list[Point] = []
    for i, (label, value) in enumerate(points):
        if value is None:
            continue
        x = left + (i * step if len(points) > 1 else (width - left - 16) / 2)
        y = top_pad + plot_h * (1 - value / top)
        drawn.append(Point(round(x, 1), round(y, 1), label, fmt(value)))
    path = " ".join(f"{'M' if i == 0 else 'L'}{p.x} {p.y}" for i, p in enumerate(drawn))
    ticks = tuple(Tick(round(top_pad + plot_h * (1 - f), 1), fmt(top * f)) for f in (0.0, 0.5, 1.0))
    return LineChart(width, height, left, top_pad + plot_h, path, tuple(drawn), ticks)
