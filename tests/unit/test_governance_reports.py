"""Given counts for two weeks or an operator's token history, when the weekly or access
review is built, then the moves are ranked and sampled as documented and unused tokens
are flagged."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cli.access import is_unused, status_of
from console.weekly import COUNTS, WeeklyReport, movers, render_markdown

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY = 86400.0


def counts(**given: int) -> dict[str, int]:
    return {c: given.get(c, 0) for c in COUNTS}


def test_the_largest_move_comes_first_and_thin_samples_are_left_out() -> None:
    weeks = {
        ("queue", "billing", False): counts(denied=0, decided=10, accepted=8, reviewed=10),
        ("queue", "billing", True): counts(denied=5, decided=10, accepted=7, reviewed=10),
        # Override rate 0 -> 100%, but on one review a week: below the sample.
        ("team", "t", False): counts(overridden=0, reviewed=1),
        ("team", "t", True): counts(overridden=1, reviewed=1),
        # A segment new this week has nothing to move from.
        ("channel", "chat", True): counts(denied=9, decided=9),
    }

    found = movers(weeks, min_sample=5, top=10)

    assert [(m.segment, m.metric, round(m.delta, 2)) for m in found] == [
        ("queue", "denial rate", 0.5),
        ("queue", "acceptance rate", -0.1),
        ("queue", "override rate", 0.0),
    ]
    assert movers(weeks, min_sample=5, top=1)[0].metric == "denial rate"


def test_an_empty_week_renders_every_part_with_none() -> None:
    text = render_markdown(WeeklyReport(date(2026, 11, 26), date(2026, 12, 3)))

    assert text.startswith("# Weekly review 2026-11-26 to 2026-12-02\n")
    assert text.count("\n\nnone\n") == 6  # one per part


def test_a_token_unused_past_the_period_is_flagged_and_a_new_one_is_not() -> None:
    period = 14 * DAY
    old = NOW - timedelta(days=20)

    assert is_unused("active", old, None, NOW, period)
    assert is_unused("active", old, NOW - timedelta(days=15), NOW, period)
    assert not is_unused("active", old, NOW - timedelta(days=1), NOW, period)
    assert not is_unused("active", NOW - timedelta(days=2), None, NOW, period)
    # A revoked or expired token is no longer a risk to flag.
    assert not is_unused("revoked", old, None, NOW, period)


def test_status_is_revoked_before_expired() -> None:
    assert status_of(NOW, NOW - timedelta(days=1), NOW) == "revoked"
    assert status_of(None, NOW, NOW) == "expired"
    assert status_of(None, NOW + timedelta(seconds=1), NOW) == "active"
