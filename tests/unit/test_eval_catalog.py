"""Given a history and a policy whose catalog lacks one of its actions, when the recommender
is evaluated, then the majority baseline is the most common action the catalog holds, the
missing names are reported, and hits are counted over both denominators."""

from __future__ import annotations

from typing import Any

import yaml

from policy.loader import default_policy_path, load_policy_text
from processors.recommend.evaluate import evaluate
from tests.unit.test_recommend_evaluate import evaluated_cases
from tests.unit.test_recommend_support import history


def without_refunds() -> Any:
    doc = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    del doc["catalog"]["refund_payment"]
    del doc["workflows"]["billing"]["actions"]["refund_payment"]
    return load_policy_text(yaml.safe_dump(doc, sort_keys=False))


def test_majority_action_is_the_most_common_cataloged_one() -> None:
    report = evaluate(history(), evaluated_cases(), policy=without_refunds())

    # refund_payment ties reset_password in history (3 each) and would win alphabetically,
    # but no recommender bound by this catalog can name it.
    assert report.majority_action == "reset_password"
    assert report.uncataloged_actions == ("refund_payment",)
    assert report.history_actions == 4


def test_hits_are_counted_over_acted_and_over_recommended_cases() -> None:
    overall = evaluate(history(), evaluated_cases(), policy=without_refunds()).overall

    # e-2's refund cannot be recommended (no action for it); the two identity cases hit.
    assert (overall.action_cases, overall.recommended, overall.hits) == (3, 2, 2)
    assert (overall.hit_rate, overall.match_rate) == (2 / 3, 1.0)
