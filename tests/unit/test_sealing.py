"""Given a case's personal data and its customer's data key, when intake seals it, then no
plaintext is left, the key opens it again, a destroyed key shows `[erased]`, a model sees
redaction's placeholders, and the same input always seals to the same bytes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given
from hypothesis import strategies as st

from infra.keys import Wrapping
from policy.redaction import BUILTIN_PATTERNS
from policy.sealing import (
    ERASED,
    UNREADABLE,
    DataKey,
    conceal,
    customer_ref,
    key_ids,
    reveal,
    seal_event,
    seal_text,
)
from policy.visibility import Redaction
from schemas.events import CaseOpened, CaseReopened, CaseResolved, CaseUpdated

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
KEY = DataKey(b"k" * 16, b"s" * 32)
OTHER = DataKey(b"o" * 16, b"t" * 32)
CLEAR = frozenset({"tier"})
OPENED = CaseOpened(
    event_id="e1",
    case_id="c1",
    occurred_at=NOW,
    source="crm",
    channel="email",
    queue="billing",
    team="t1",
    subject="Refund for Jane Doe",
    description="Mail jane.doe@example.com or call +1 415 555 0123; card 4111 1111 1111 1111.",
    priority="high",
    customer={"id": "cu-7", "name": "Jane Doe", "email": "jane.doe@example.com", "tier": "gold"},
    attributes={"order_id": "ORD-1"},
)
SECRETS = ("Jane Doe", "jane.doe@example.com", "415 555 0123", "4111 1111", "cu-7")


def test_an_opened_case_keeps_no_plaintext_and_opens_again_with_its_key() -> None:
    sealed = seal_event(OPENED, KEY, CLEAR)

    assert isinstance(sealed, CaseOpened)
    for secret in SECRETS:
        assert secret not in repr(sealed)
    assert sealed.customer["tier"] == "gold" and sealed.attributes == OPENED.attributes
    keys = {KEY.key_id: KEY}
    assert reveal(sealed.customer, keys) == OPENED.customer
    assert reveal(sealed.subject, keys) == OPENED.subject
    assert reveal(sealed.description, keys) == OPENED.description
    assert key_ids([sealed.customer, sealed.description]) == {KEY.key_id}


def test_a_destroyed_key_shows_erased_and_an_unknown_one_unreadable() -> None:
    sealed = seal_event(OPENED, KEY, CLEAR)
    assert isinstance(sealed, CaseOpened)

    assert reveal(sealed.subject, {KEY.key_id: None}) == f"Refund for {ERASED}"
    assert reveal(sealed.customer["name"], {}) == UNREADABLE
    # another key under the same id does not open it (the AES-GCM tag fails)
    assert reveal(sealed.customer["name"], {KEY.key_id: OTHER}) == UNREADABLE


def test_sealing_is_deterministic_per_event_and_unlinkable_across_events() -> None:
    once, again = seal_event(OPENED, KEY, CLEAR), seal_event(OPENED, KEY, CLEAR)
    elsewhere = seal_event(replace(OPENED, event_id="e2"), KEY, CLEAR)

    assert once == again
    assert isinstance(once, CaseOpened) and isinstance(elsewhere, CaseOpened)
    assert once.customer["email"] != elsewhere.customer["email"]


def test_a_model_sees_the_placeholders_redaction_would_write() -> None:
    sealed = seal_event(OPENED, KEY, CLEAR)
    assert isinstance(sealed, CaseOpened)

    seen = conceal(sealed.description)

    assert seen == Redaction(builtin=("email", "phone", "card")).redact(OPENED.description)
    assert conceal(sealed.subject) == "Refund for [customer.name]"


def test_later_events_seal_customer_changes_and_personal_text() -> None:
    update = CaseUpdated(
        event_id="u1",
        case_id="c1",
        occurred_at=NOW,
        actor="crm",
        changes={"customer.email": "new@example.org", "customer.tier": "silver", "n": 2},
        note="call back on +44 20 7946 0958",
    )
    reopened = CaseReopened(event_id="r1", case_id="c1", occurred_at=NOW, reason="x@example.io")

    sealed = seal_event(update, KEY, CLEAR)
    sealed_reopen = seal_event(reopened, KEY, CLEAR)

    assert isinstance(sealed, CaseUpdated) and isinstance(sealed_reopen, CaseReopened)
    assert "new@example.org" not in repr(sealed) and "7946" not in repr(sealed)
    assert sealed.changes["customer.tier"] == "silver" and sealed.changes["n"] == 2
    assert reveal(sealed.changes, {KEY.key_id: KEY}) == update.changes
    assert "x@example.io" not in sealed_reopen.reason


def test_an_event_without_personal_data_is_returned_as_it_is() -> None:
    resolved = CaseResolved(
        event_id="s1",
        case_id="c1",
        occurred_at=NOW,
        resolved_by="sam",
        resolution_code="done",
        category="billing",
        actions_taken=(),
    )
    plain = replace(OPENED, subject="refund", description="late parcel", customer={"tier": "x"})

    assert seal_event(resolved, KEY, CLEAR) is resolved
    assert seal_event(plain, KEY, CLEAR) is plain
    assert seal_text(KEY, b"c", "nothing personal") == "nothing personal"


def test_the_customer_ref_hides_the_id_and_falls_back_to_the_case() -> None:
    ref = customer_ref(b"r" * 32, OPENED)

    assert "cu-7" not in ref and len(ref) == 64
    assert ref == customer_ref(b"r" * 32, replace(OPENED, case_id="c2"))  # same customer
    assert ref != customer_ref(b"q" * 32, OPENED)  # another deployment's key
    anonymous = replace(OPENED, customer={})
    assert customer_ref(b"r" * 32, anonymous) != customer_ref(
        b"r" * 32, replace(anonymous, case_id="c2")
    )


def test_a_wrapped_data_key_opens_only_under_its_master_key_and_id() -> None:
    wrapping = Wrapping(b"m" * 32)
    wrapped = wrapping.wrap(KEY.key_id, b"s" * 32)
    token = KEY.seal("customer.name", b"e1/customer.name", "Jane Doe")

    unwrapped = wrapping.unwrap(KEY.key_id, wrapped)

    assert b"s" * 32 not in wrapped
    assert reveal(token, {KEY.key_id: unwrapped}) == "Jane Doe"
    with pytest.raises(InvalidTag):
        Wrapping(b"n" * 32).unwrap(KEY.key_id, wrapped)
    with pytest.raises(InvalidTag):
        wrapping.unwrap(OTHER.key_id, wrapped)


@given(st.text(alphabet="0123456789 -().+x@", max_size=60))
def test_the_nine_digit_precheck_never_hides_a_card_or_phone_number(text: str) -> None:
    sealed = seal_text(KEY, b"c", text)

    for name in ("card", "phone"):
        for match in BUILTIN_PATTERNS[name].finditer(text):  # type: ignore[attr-defined]
            assert match.group() not in conceal(sealed)
    assert conceal(sealed) == conceal(seal_text(KEY, b"c", text))
