"""Given a case and the policy's model visibility, then exactly what a model may read."""

from __future__ import annotations

import re

import pytest

from processors.recommend.case_view import CaseView, apply_update, open_view, text_changed
from processors.recommend.redacted_view import Visibility, model_input, restrict, sha256_json
from schemas.events import Scalar
from tests.unit.test_recommend_support import default_policy, opened, updated

POLICY_VISIBILITY = Visibility.from_policy(default_policy().policy.model_visibility)


def case(description: str = "Charged twice.", **attributes: Scalar) -> CaseView:
    return open_view(
        opened(
            "c1",
            "Charged twice",
            description,
            customer={"id": "cu-9", "name": "Bo Chen", "email": "bo@example.com", "tier": "gold"},
            attributes={"product": "portal", "order_id": "ORD-88213", **attributes},
        )
    )


def test_only_allowlisted_present_fields_are_read_in_policy_order() -> None:
    seen = model_input(case(), POLICY_VISIBILITY)
    assert seen.fields_seen == (
        "subject",
        "description",
        "channel",
        "queue",
        "priority",
        "attributes.product",
    )
    assert dict(seen.fields)["attributes.product"] == "portal"
    assert "Bo Chen" not in str(dict(seen.fields))


def test_a_bare_map_name_exposes_each_entry_and_a_sub_key_only_itself() -> None:
    visibility = Visibility(("customer.tier", "attributes"), ())
    seen = model_input(case(seats=3), visibility)
    assert seen.fields_seen == (
        "customer.tier",
        "attributes.order_id",
        "attributes.product",
        "attributes.seats",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at ann.lee+x@mail.example.co.uk today", "mail me at [email] today"),
        ("call +1 415 555 0100 or (415) 555-0199", "call [phone] or [phone]"),
        ("card 4111 1111 1111 1111 was charged", "card [card] was charged"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("order ORD-88213 and account ACC-7", "order [order_id] and account [account_id]"),
        ("on 2026-01-05 the card ending 4242 failed", "on 2026-01-05 the card ending 4242 failed"),
    ],
)
def test_personal_data_in_free_text_is_redacted(text: str, expected: str) -> None:
    assert dict(model_input(case(text), POLICY_VISIBILITY).fields)["description"] == expected


def test_the_input_hash_is_canonical_and_tracks_the_content() -> None:
    first, again = model_input(case(), POLICY_VISIBILITY), model_input(case(), POLICY_VISIBILITY)
    assert first.sha256 == again.sha256 == sha256_json(dict(first.fields))
    assert re.fullmatch(r"[0-9a-f]{64}", first.sha256)
    assert model_input(case("Other text."), POLICY_VISIBILITY).sha256 != first.sha256


def test_the_model_input_cannot_be_changed_after_the_fact() -> None:
    with pytest.raises(TypeError):
        model_input(case(), POLICY_VISIBILITY).fields["subject"] = "x"  # type: ignore[index]


def test_restrict_blanks_everything_a_model_may_not_see() -> None:
    kept = restrict(case("Write to bo@example.com"), POLICY_VISIBILITY)
    assert kept.customer == {}
    assert dict(kept.attributes) == {"product": "portal"}
    assert kept.team == "" and kept.source == ""
    assert kept.description == "Write to [email]"
    assert model_input(kept, POLICY_VISIBILITY) == model_input(
        case("Write to bo@example.com"), POLICY_VISIBILITY
    )


def test_updates_change_fields_maps_and_unknown_keys_land_in_attributes() -> None:
    view = apply_update(
        case(),
        updated(
            "c1",
            {
                "subject": "New subject",
                "customer.tier": "silver",
                "attributes.product": None,
                "carrier": "postal",
                "issue_class": "billing_issue",
            },
        ),
    )
    assert view.subject == "New subject"
    assert view.customer["tier"] == "silver"
    assert "product" not in view.attributes
    assert view.attributes["carrier"] == "postal"
    assert view.issue_class == "billing_issue"
    assert view.last_event_id == "upd-c1-1" and view.opened_event_id == "open-c1"


def test_only_subject_or_description_changes_call_for_a_new_recommendation() -> None:
    before = case()
    assert not text_changed(before, apply_update(before, updated("c1", {"priority": "high"})))
    assert text_changed(before, apply_update(before, updated("c1", {"description": "More."})))
