"""CLI tables that fit the terminal: full headers when they fit, else abbreviations with a
legend under the table; cells wrap (fold) instead of being cut with an ellipsis."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Col:
    """One column: its header, the abbreviation used when the headers do not fit, and
    what the abbreviation means (the legend's line)."""

    header: str
    short: str | None = None
    meaning: str = ""
    justify: Literal["left", "right"] = "right"


def fitted(
    console: Console,
    cols: Sequence[Col],
    rows: Iterable[Sequence[str]],
    title: str | None = None,
    styles: Sequence[str | None] | None = None,
) -> tuple[Table, list[str]]:
    """The table for `console`'s width and the legend lines to print under it (empty when
    the full headers fit)."""
    body = [list(r) for r in rows]
    table = _table(cols, body, title, styles, short=False)
    # Measured without the terminal's limit: the width the table wants, unwrapped.
    width = Measurement.get(console, console.options.update(max_width=100_000), table).maximum
    if width <= console.width:
        return table, []
    legend = [f"{c.short} = {c.meaning or c.header}" for c in cols if c.short]
    return _table(cols, body, title, styles, short=True), legend


def print_fitted(
    console: Console,
    cols: Sequence[Col],
    rows: Iterable[Sequence[str]],
    title: str | None = None,
    styles: Sequence[str | None] | None = None,
) -> None:
    table, legend = fitted(console, cols, rows, title, styles)
    console.print(table)
    if legend:
        console.print("; ".join(legend), soft_wrap=False, highlight=False)


def _table(
    cols: Sequence[Col],
    body: list[list[str]],
    title: str | None,
    styles: Sequence[str | None] | None,
    short: bool,
) -> Table:
    # Abbreviated: a lighter box and tighter padding give the cells the room.
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD if short else box.HEAVY_HEAD,
        padding=(0, 1) if not short else (0, 0, 0, 1),
    )
    for c in cols:
        header = c.short if short and c.short else c.header
        table.add_column(header, justify=c.justify, overflow="fold")
    for index, row in enumerate(body):
        table.add_row(*row, style=styles[index] if styles else None)
    return table
