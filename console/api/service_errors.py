"""Errors the console's services raise; the API renders them as JSON, the pages as HTML."""

from __future__ import annotations

from collections.abc import Sequence


class ConsoleError(Exception):
    """A request that cannot be served, with the HTTP status and a message for people."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(ConsoleError):
    status = 401


class Forbidden(ConsoleError):
    status = 403


class NotFound(ConsoleError):
    status = 404


class Conflict(ConsoleError):
    status = 409


class Unavailable(ConsoleError):
    status = 503


class Invalid(ConsoleError):
    """A well-formed request whose fields do not fit together; names each field at fault."""

    status = 422

    def __init__(self, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{dotted(loc)}: {msg}" for loc, msg in self.problems))


def dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)
