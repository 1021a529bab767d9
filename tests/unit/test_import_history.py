"""Given a history file's events, then whether `casegate import history` takes it and what
it reports as learned; and the import marker read back from record headers."""

from __future__ import annotations

from cli.import_cmd import check_history, summarize
from schemas.codec import IMPORT_HEADER, is_imported
from schemas.events import ActionSpec
from tests.unit.test_recommend_support import opened, reclassified, reopened, resolved

RESET = ActionSpec(name="reset_password", params={"method": "email_link"})


def test_a_resolved_history_is_taken_and_summarized() -> None:
    events = [
        opened("a", "Locked out", "Account locked."),
        opened("b", "Charged twice", "Two charges."),
        resolved("a", "password_reset", RESET),
        resolved("b", "double_charge"),
        reopened("b"),
        resolved("b", "refund_request", RESET),
    ]
    assert check_history(events) == []
    learned = summarize(events)
    assert (learned.cases, learned.events) == (2, 6)
    assert dict(learned.categories) == {"password_reset": 1, "refund_request": 1}
    assert dict(learned.actions) == {"reset_password": 2}
    assert learned.first is not None and learned.last is not None
    assert learned.first <= learned.last


def test_open_cases_events_before_opening_and_other_topics_are_refused() -> None:
    problems = check_history(
        [
            resolved("x", "other"),
            opened("a", "Locked out", "Account locked."),
            opened("a", "Locked out", "Again."),
            reclassified("a", "password_reset"),
            opened("b", "Charged twice", "Two charges."),
            resolved("b", "double_charge"),
            reopened("b"),
        ]
    )
    assert problems[0] == "event 1: case x has events before its CaseOpened"
    assert problems[1] == "event 3: case a is opened twice"
    assert problems[2] == "event 4: CaseReclassified is not a case event"
    assert problems[3].startswith("2 case(s) do not end resolved (a, b)")


def test_the_marker_is_read_from_either_header_form() -> None:
    assert is_imported([("event_type", b"CaseOpened"), (IMPORT_HEADER, b"history")])
    assert is_imported({IMPORT_HEADER: "yes"})
    assert not is_imported([(IMPORT_HEADER, b"false")])
    assert not is_imported([("event_type", b"CaseOpened")]) and not is_imported(None)
