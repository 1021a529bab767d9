"""Given hostile text, then redaction finds what the plain regexes find, in linear time."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.recommender import HOSTILE_TEXT as HOSTILE
from policy.redaction import BUILTIN_PATTERNS, EmailPattern

# The quadratic reference: fine on short strings, where it says what must be redacted.
REFERENCE = re.compile(EmailPattern.pattern)


@given(st.text(alphabet="ab.@-_+ 1X", max_size=40))
@settings(max_examples=2000, deadline=None)
def test_the_email_scan_redacts_exactly_what_the_regex_does(text: str) -> None:
    assert EmailPattern().sub("[email]", text) == REFERENCE.sub("[email]", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@b.cc.x@y.com", "[email][email]"),
        ("mail ann.lee+x@mail.example.co.uk, or bo@ex.io.", "mail [email], or [email]."),
        ("no@tld and @alone and a@b.c", "no@tld and @alone and a@b.c"),
    ],
)
def test_email_edge_cases(text: str, expected: str) -> None:
    assert EmailPattern().sub("[email]", text) == expected


def _best(redact: Callable[[str], str], text: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("name", list(BUILTIN_PATTERNS))
@pytest.mark.parametrize("shape", list(HOSTILE))
def test_every_builtin_pattern_scales_linearly_on_hostile_text(name: str, shape: str) -> None:
    """Ten times the text costs about ten times the work; a quadratic pattern costs 100x.

    Ratios, not absolute times, so a slow or busy machine does not fail it; best of
    several runs, so one stall does not either; a floor of 20 ms under the small run,
    because timer noise dominates below it (a quadratic pattern takes minutes on 1 MB).
    """
    pattern = BUILTIN_PATTERNS[name]

    def redact(text: str) -> str:
        return pattern.sub(f"[{name}]", text)

    small = _best(redact, HOSTILE[shape](100_000), runs=3)
    large = _best(redact, HOSTILE[shape](1_000_000), runs=3)
    assert large <= 30 * max(small, 0.02), f"{name} on {shape!r}: {small:.4f}s -> {large:.4f}s"
