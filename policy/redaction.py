"""Built-in redaction patterns that run in time linear in the text, whatever the text.

The obvious email regex, ``[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}``, is quadratic:
on a long run of address characters without an ``@`` every start position rescans the
run (40k characters took 2.75 s, 1 MB half an hour, stalling the recommender). `EmailPattern`
finds exactly the matches that regex finds, by splitting each run on ``@`` so every
character is looked at a bounded number of times. Card and phone are regexes whose
repetitions are bounded and whose pieces cannot overlap (digits vs separators), so each
start position costs a bounded amount of work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise
from typing import Protocol

__all__ = ["BUILTIN_PATTERNS", "EmailPattern", "Substitution"]


class Substitution(Protocol):
    """What redaction needs of a pattern: `re.Pattern.sub` with a plain replacement."""

    def sub(self, repl: str, string: str) -> str: ...


# A run of the characters an address is made of (local part, "@", domain).
_RUN = re.compile(r"[A-Za-z0-9._%+@-]+")
_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
_TLD = re.compile(r"[A-Za-z]{2,}")


def _domain_end(rest: str) -> int:
    """Length of the longest ``[A-Za-z0-9.-]+\\.[A-Za-z]{2,}`` prefix of `rest`, 0 if none.

    Greedy like the regex: the last dot that has a non-empty name before it and two
    letters after it ends the host part, and the top-level domain takes every letter
    after that dot. Each dot of the domain is tried once.
    """
    domain = _DOMAIN.match(rest)
    if domain is None:
        return 0
    end = domain.end()
    dot = rest.rfind(".", 1, end)
    while dot > 0:
        tld = _TLD.match(rest, dot + 1, end)
        if tld is not None:
            return tld.end()
        dot = rest.rfind(".", 1, dot)
    return 0


def _spans(run: str) -> Iterator[tuple[int, int]]:
    """The (start, end) of each address in `run`, leftmost first, none overlapping."""
    parts = run.split("@")
    offset = 0  # where the current part starts in `run`
    done = 0  # end of the last address: the next local part starts no earlier
    for local, rest in pairwise(parts):
        at = offset + len(local)
        start = max(offset, done)
        offset = at + 1
        if start == at:  # empty local part
            continue
        end = _domain_end(rest)
        if end:
            done = offset + end
            yield start, done


class EmailPattern:
    """Email addresses, found in one pass (see the module docstring)."""

    pattern = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"  # what it matches

    def spans(self, string: str) -> Iterator[tuple[int, int]]:
        """The (start, end) of every address in `string`, leftmost first."""
        if "@" not in string:
            return
        for run in _RUN.finditer(string):
            token, base = run.group(), run.start()
            if "@" in token:
                for start, end in _spans(token):
                    yield base + start, base + end

    def sub(self, repl: str, string: str) -> str:
        out: list[str] = []
        last = 0
        for start, end in self.spans(string):
            out += (string[last:start], repl)
            last = end
        if not out:
            return string
        out.append(string[last:])
        return "".join(out)


# Applied after the custom patterns (which are more specific, e.g. ORD-123), and card
# before phone, because a card number would otherwise be half-eaten as a phone number.
# The phone pattern wants 9+ digits so dates like 2026-01-05 stay readable.
BUILTIN_PATTERNS: dict[str, Substitution] = {
    "email": EmailPattern(),
    "card": re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"),
    "phone": re.compile(r"(?<![\w@])(?:\+|\()?\d(?:[ ().-]{0,2}\d){8,14}(?!\w)"),
}
