"""How CLI commands fail: one line saying what is wrong, one saying what to do next."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from infra.setup_errors import SetupError

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)


def exit_on_setup_error(fn: Callable[[], T]) -> T:
    """Run a command body; a SetupError becomes its message, its hint, and exit code 1."""
    try:
        return fn()
    except SetupError as exc:
        err.print(f"[red]error:[/] {exc}")
        if exc.hint:
            err.print(f"[yellow]next:[/] {exc.hint}")
        raise typer.Exit(1) from None
