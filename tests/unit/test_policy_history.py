"""A version is published once: the rule every reader of the `policy` topic applies, so
the console and the processors agree on the policy in force."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from policy.loader import (
    PolicyHistory,
    PolicyInvalid,
    default_policy_path,
    load_policy_file,
    load_policy_text,
    policy_key,
)
from schemas.events import PolicyPublished, record_key

POLICY = load_policy_file(default_policy_path())


def test_a_new_version_comes_into_force_and_a_republished_one_does_not() -> None:
    history = PolicyHistory()
    assert history.offer("v3", "a" * 64, POLICY) is None
    assert history.offer("v5", "b" * 64, POLICY) is None
    in_force = history.latest

    # v3 sent again (the same document or another): refused with the reason, v5 stays.
    again = history.offer("v3", "a" * 64, POLICY)
    other = history.offer("v3", "c" * 64, POLICY)

    assert again is not None and again.startswith("republished_version")
    assert "same document" in again
    assert other is not None and "other content" in other
    assert history.latest is in_force
    assert history.seen == {"v3": "a" * 64, "v5": "b" * 64}


def test_refusal_only_asks() -> None:
    history = PolicyHistory()
    assert history.refusal("v1", "a" * 64) is None
    assert history.seen == {}


def published(version: str, document: str | None = None) -> PolicyPublished:
    text = document if document is not None else POLICY.text.replace(POLICY.version, version, 1)
    loaded = load_policy_text(text)
    return PolicyPublished(
        event_id=f"p-{version}",
        case_id="policy",
        occurred_at=datetime.now(UTC),
        version=loaded.version,
        sha256=loaded.sha256,
        author="ops",
        document=text,
    )


def test_admit_takes_a_record_keyed_by_its_version_once() -> None:
    history = PolicyHistory()
    first = published("v7")
    assert record_key(first) == policy_key("v7") == b"v7"
    assert history.admit(b"v7", first).version == "v7"
    assert history.latest is not None and history.latest.version == "v7"
    with pytest.raises(PolicyInvalid, match="republished_version"):
        history.admit(b"v7", replace(first, event_id="again"))


def test_admit_refuses_a_record_keyed_otherwise_or_not_matching_its_event() -> None:
    history = PolicyHistory()
    with pytest.raises(PolicyInvalid, match="keyed by their version"):
        history.admit(b"policy", published("v8"))
    with pytest.raises(PolicyInvalid, match="the event says"):
        history.admit(b"v9", replace(published("v9"), sha256="0" * 64))
    with pytest.raises(PolicyInvalid):
        history.admit(b"v1", replace(published("v1"), document="version: [unterminated"))
    # None of them came into force, nor took their version.
    assert history.latest is None and history.seen == {}
