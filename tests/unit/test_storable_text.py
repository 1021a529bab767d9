"""Given an event whose text holds U+0000 (which PostgreSQL text and jsonb cannot store),
when the read models take it, then every U+0000 becomes U+FFFD and nothing else changes;
an event without one is passed through untouched."""

from __future__ import annotations

import dataclasses

from projections.envelope import Envelope, storable
from schemas.events import ActionSpec, CaseOpened, RecommendationProduced
from tests.samples import sample_events

SAMPLES = {e.event_type: e for e in sample_events()}


def test_nul_in_any_text_of_an_event_becomes_the_replacement_character() -> None:
    opened = SAMPLES["CaseOpened"]
    assert isinstance(opened, CaseOpened)
    event = dataclasses.replace(
        opened, subject="a\x00b", customer={"na\x00me": "x\x00"}, attributes={"n": "\x00"}
    )

    stored = storable(Envelope("t.cases", 0, 7, b"k", event)).event

    assert isinstance(stored, CaseOpened)
    assert (stored.subject, stored.customer, stored.attributes) == (
        "a\ufffdb",
        {"na\ufffdme": "x\ufffd"},
        {"n": "\ufffd"},
    )
    assert (
        dataclasses.replace(
            stored, subject=opened.subject, customer=opened.customer, attributes=opened.attributes
        )
        == opened
    )


def test_nested_records_and_lists_are_cleaned_too() -> None:
    rec = SAMPLES["RecommendationProduced"]
    assert isinstance(rec, RecommendationProduced)
    event = dataclasses.replace(
        rec, action=ActionSpec(name="x", params={"p": "\x00"}), summary="\x00"
    )

    stored = storable(Envelope("t.recommendations", 0, 1, None, event)).event

    assert isinstance(stored, RecommendationProduced) and stored.action is not None
    assert (stored.summary, stored.action.params) == ("\ufffd", {"p": "\ufffd"})


def test_an_event_without_nul_is_passed_through_untouched() -> None:
    env = Envelope(
        "t.cases",
        0,
        1,
        None,
        dataclasses.replace(SAMPLES["CaseOpened"], subject="a literal \\u0000 is six characters"),
    )

    assert storable(env) is env or storable(env).event == env.event
