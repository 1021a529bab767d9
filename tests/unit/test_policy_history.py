"""A version is published once: the rule every reader of the `policy` topic applies, so
the console and the processors agree on the policy in force."""

from __future__ import annotations

from policy.loader import PolicyHistory, default_policy_path, load_policy_file

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
