"""Given documents in the TF-IDF index, then search, eviction and idf behave as specified."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.recommend.textindex import TfIdfIndex, tokenize, weigh


def test_tokenize_drops_stopwords_folds_plurals_and_keeps_placeholders() -> None:
    assert tokenize("The refunds for my [order_id] address!") == ["refund", "[order_id]", "address"]


def test_the_oldest_document_is_evicted_and_its_payload_returned() -> None:
    index: TfIdfIndex[str] = TfIdfIndex(max_docs=2)
    assert index.add("a", {"x": 1.0}, "A") == []
    assert index.add("b", {"x": 1.0}, "B") == []
    assert index.add("c", {"y": 1.0}, "C") == ["A"]
    assert index.add("b", {"y": 1.0}, "B2") == ["B"]  # re-indexing replaces
    assert [key for key, _, _ in index.search({"y": 1.0}, 5)] == ["b", "c"]
    assert index.remove("zzz") is None and len(index) == 2


def test_equal_similarities_are_ordered_by_key_and_exclude_is_honoured() -> None:
    index: TfIdfIndex[None] = TfIdfIndex(max_docs=10)
    for key in ("k3", "k1", "k2"):
        index.add(key, {"same": 1.0}, None)
    assert [key for key, _, _ in index.search({"same": 1.0}, 3)] == ["k1", "k2", "k3"]
    assert [key for key, _, _ in index.search({"same": 1.0}, 3, exclude="k1")] == ["k2", "k3"]


def brute_force(docs: dict[str, dict[str, float]], query: dict[str, float]) -> dict[str, float]:
    df = Counter(t for weights in docs.values() for t in weights)
    idf = {t: math.log((1 + len(docs)) / (1 + df[t])) + 1 for t in {*df, *query}}
    q = {t: w * idf[t] for t, w in query.items()}
    qn = math.sqrt(sum(v * v for v in q.values()))
    out = {}
    for key, weights in docs.items():
        d = {t: w * idf[t] for t, w in weights.items()}
        dot = sum(q.get(t, 0.0) * v for t, v in d.items())
        if dot > 0:
            out[key] = dot / (qn * math.sqrt(sum(v * v for v in d.values())))
    return out


words = st.lists(
    st.sampled_from(["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"]), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(st.lists(words, min_size=1, max_size=25), words)
def test_with_generous_knobs_search_is_exact_cosine(
    docs: list[list[str]], query: list[str]
) -> None:
    index: TfIdfIndex[None] = TfIdfIndex(max_docs=100, max_candidates=100, walk_budget=10_000)
    corpus = {f"d{i:02d}": weigh(Counter(doc)) for i, doc in enumerate(docs)}
    for key, weights in corpus.items():
        index.add(key, weights, None)
    q = weigh(Counter(query))
    expected = brute_force(corpus, q)
    hits = index.search(q, k=len(corpus))
    assert {key: round(sim, 9) for key, sim, _ in hits} == {
        key: round(min(1.0, sim), 9) for key, sim in expected.items()
    }
    sims = [sim for _, sim, _ in hits]
    assert sims == sorted(sims, reverse=True)


def test_with_tight_knobs_search_still_returns_well_formed_results() -> None:
    index: TfIdfIndex[None] = TfIdfIndex(max_docs=1000, max_candidates=5, walk_budget=10)
    for i in range(300):
        index.add(i, {"common": 1.0, f"rare{i % 50}": 1.0}, None)
    hits = index.search({"common": 1.0, "rare7": 1.0}, k=3)
    assert len(hits) == 3 and all(0.0 < sim <= 1.0 for _, sim, _ in hits)
    # The rare term picked the candidates.
    assert all(isinstance(key, int) and key % 50 == 7 for key, _, _ in hits)
