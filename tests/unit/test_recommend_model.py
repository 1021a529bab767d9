"""Given texts and labelled examples, then the hashed features, the fitted model and its
batched scoring behave as specified (deterministic for a seed)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processors.recommend.features import BUCKETS, FAMILIES, count_ngrams
from processors.recommend.fitting import CALIBRATE_FROM, Example, fit
from processors.recommend.model import FAMILY_WEIGHTS, FittedModel, _top_k

TEXTS = ["My card was charged twice", "Locked out of my account", "Where is my parcel?"]


def columns(text: str) -> list[int]:
    return count_ngrams([text]).matrix.indices.tolist()  # type: ignore[no-any-return]


def test_a_texts_counts_do_not_depend_on_the_rest_of_the_batch() -> None:
    batch = count_ngrams(TEXTS, [("queue=billing",), (), ("queue=shipping",)]).matrix
    for i, text in enumerate(TEXTS):
        tags = [("queue=billing",), (), ("queue=shipping",)][i]
        alone = count_ngrams([text], [tags]).matrix
        assert (batch[i] != alone[0]).nnz == 0


def test_case_and_whitespace_do_not_matter_and_the_families_stay_apart() -> None:
    assert columns("Charged  TWICE\n") == columns("charged twice")
    m = count_ngrams(["card"], [("queue=billing",)]).matrix
    families = m.indices // BUCKETS
    # "card": one word; " c", "ca", … within the padded word; one tag.
    assert sorted(set(families.tolist())) == list(range(FAMILIES))
    assert int((families == 0).sum()) == 1 and int((families == 2).sum()) == 1
    assert int((families == 1).sum()) == 5 + 4 + 3  # windows of 2, 3 and 4 in " card "


def test_a_word_pair_never_spans_two_texts() -> None:
    apart = count_ngrams(["alpha", "beta"]).matrix
    together = count_ngrams(["alpha beta"]).matrix
    words = lambda m: {c for c in m.indices.tolist() if c < BUCKETS}  # noqa: E731
    assert len(words(together)) == 3  # alpha, beta, "alpha beta"
    assert len(words(apart)) == 2


def test_hashes_are_the_same_in_another_process() -> None:
    code = (
        "from processors.recommend.features import count_ngrams;"
        "print(count_ngrams(['Refund my double charge']).matrix.indices.tolist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == str(columns("Refund my double charge"))


@pytest.mark.parametrize("width", [7, 5_000, 9_001])  # narrow; wide enough for lanes
def test_top_k_is_the_exact_top_k_largest_first(width: int) -> None:
    sims = np.random.default_rng(3).random((6, width)).astype(np.float32)
    picked, values = _top_k(sims, 10)
    for row in range(6):
        expected = sorted(range(width), key=lambda c: -sims[row, c])[:10]
        assert picked[row].tolist() == expected
        assert values[row].tolist() == sims[row, expected].tolist()


def test_top_k_breaks_ties_by_the_lower_column_and_repeats_itself() -> None:
    sims = np.round(np.random.default_rng(4).random((4, 9_001)), 2).astype(np.float32)
    picked, values = _top_k(sims, 10)
    for row in range(4):
        best = sorted(sims[row].tolist(), reverse=True)[:10]
        assert values[row].tolist() == best  # the k largest values, whatever the ties
        pairs = list(zip((-values[row]).tolist(), picked[row].tolist(), strict=True))
        assert pairs == sorted(pairs)  # equal values: lower column first
    again = _top_k(sims, 10)
    assert np.array_equal(again[0], picked) and np.array_equal(again[1], values)


def labelled(n: int, seed: int = 1) -> list[Example]:
    """n examples over three categories with their usual first action, and some noise."""
    rng = random.Random(seed)
    topics = {
        "double_charge": (["charged", "twice", "duplicate", "payment"], "refund_payment"),
        "password_reset": (["password", "locked", "login", "reset"], "reset_password"),
        "delivery_delay": (["parcel", "late", "tracking", "delivery"], "reship_order"),
    }
    filler = ["hello", "please", "my", "order", "thanks", "today", "the", "account"]
    out = []
    for _ in range(n):
        category = rng.choice(sorted(topics))
        words, action = topics[category]
        text = " ".join(rng.sample(words, 2) + rng.sample(filler, 3))
        out.append(Example(text, ("queue=q",), category, action if rng.random() < 0.9 else ""))
    return out


def test_the_same_examples_give_the_same_model_and_another_order_another_version() -> None:
    examples = labelled(60)
    a, b = fit(examples), fit(examples)
    assert a.version == b.version
    assert np.array_equal(a.first, b.first) and np.array_equal(a.history, b.history)
    assert fit(list(reversed(examples))).version != a.version


def test_a_saved_model_scores_exactly_as_the_fitted_one(tmp_path: Path) -> None:
    model = fit(labelled(60))
    model.save(tmp_path / "m")
    loaded = FittedModel.load(tmp_path / "m")
    counts = count_ngrams(["my parcel is late", "charged twice again"], [("queue=q",)] * 2)
    first, again = model.score(counts), loaded.score(counts)
    assert loaded.version == model.version
    for name in ("category", "action", "neighbours", "similarity"):
        assert np.array_equal(getattr(first, name), getattr(again, name))


def test_probabilities_are_distributions_and_the_model_learns_the_topics() -> None:
    model = fit(labelled(CALIBRATE_FROM + 100))
    assert model.category_temperature != 1.0  # fitted on the held-out fifth
    counts = count_ngrams(["my password is locked", "tracking says the parcel is late"])
    scores = model.score(counts)
    assert np.allclose(scores.category.sum(axis=1), 1.0)
    assert np.allclose(scores.action.sum(axis=1), 1.0)
    cats = [model.categories[i] for i in scores.category.argmax(axis=1)]
    acts = [model.actions[i] for i in scores.action.argmax(axis=1)]
    assert cats == ["password_reset", "delivery_delay"]
    assert acts == ["reset_password", "reship_order"]


def test_the_families_are_normalised_to_their_weights() -> None:
    model = fit(labelled(30))
    x = model.weighting.transform(count_ngrams(["charged twice please"], [("queue=q",)]))
    starts = [*model.weighting.starts.tolist(), x.shape[1]]
    for family, weight in enumerate(FAMILY_WEIGHTS):
        block = x[:, starts[family] : starts[family + 1]]
        assert np.sqrt(block.multiply(block).sum()) == pytest.approx(weight, rel=1e-5)


def test_one_category_or_two_are_learned_as_well() -> None:
    one = fit([Example("a b c", (), "only", "x"), Example("c d e", (), "only", None)])
    assert one.categories == ("only",)
    assert one.score(count_ngrams(["b c"])).category.tolist() == [[1.0]]
    pair = [e for e in labelled(80) if e.category != "delivery_delay"]
    two = fit(pair)  # the binary case of both linear models and the network
    assert two.categories == ("double_charge", "password_reset")
    scores = two.score(count_ngrams(["locked out, reset my password", "charged twice"]))
    assert [two.categories[i] for i in scores.category.argmax(axis=1)] == [
        "password_reset",
        "double_charge",
    ]
    with pytest.raises(ValueError, match="at least one example with a category"):
        fit([Example("a", (), None, "x")])
