"""A small TF-IDF index with cosine similarity, bounded in size, built for speed.

Documents are sparse term-weight dicts (sublinear tf). A query keeps its
`max_query_terms` most informative terms, walks the postings of the rarest ones within
`walk_budget`, keeps the `max_candidates` best documents found, and scores those
exactly. Its cost is thus bounded by the knobs, not by the size of the history; the
price is that a document sharing only common words with the query may be missed.

IDF moves as documents come and go. It is computed lazily per term and the whole table
(with the cached document norms) is refreshed only once the corpus has changed by more
than `REFRESH_FRACTION` since the last refresh: a bounded staleness traded for speed.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Generic, TypeVar

P = TypeVar("P")
REFRESH_FRACTION = 0.1

TOKEN = re.compile(r"\[[a-z_]+\]|[^\W_]+")
_STOPWORD_TEXT = (
    "a an and are as at be been but by can could did do does for from had has have he her "
    "him his i if in into is it its me my no not of on or our please she so than that the "
    "their them then there they this to up us was we were what when which who will with "
    "would you your yours hi hello thanks thank"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, without stopwords, one-letter words or a plural `s`."""
    out = []
    for token in TOKEN.findall(text.lower()):
        if len(token) < 2 or token in STOPWORDS:
            continue
        # Crude plural folding so "refunds" meets "refund"; "address" keeps its s.
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
            token = token[:-1]
        out.append(token)
    return out


def weigh(counts: Mapping[str, int]) -> dict[str, float]:
    """Sublinear term frequency, 1 + ln(tf): repeating a word adds less each time."""
    return {t: 1.0 + math.log(n) for t, n in counts.items() if n > 0}


@dataclass(slots=True)
class _Doc(Generic[P]):
    key: Hashable
    weights: dict[str, float]
    payload: P
    norm: float = 0.0
    norm_generation: int = -1


class TfIdfIndex(Generic[P]):
    """Keyed documents with payloads; the oldest is evicted beyond `max_docs`."""

    def __init__(
        self,
        max_docs: int,
        max_candidates: int = 64,
        walk_budget: int = 1_000,
        max_query_terms: int = 24,
    ) -> None:
        if min(max_docs, max_candidates, walk_budget, max_query_terms) < 1:
            raise ValueError(
                "max_docs, max_candidates, walk_budget and max_query_terms must be positive"
            )
        self.max_query_terms = max_query_terms
        self.max_docs = max_docs
        self.max_candidates = max_candidates
        self.walk_budget = walk_budget
        # Insertion order is age; OrderedDict pops its oldest entry in O(1), where a
        # dict would rescan the holes its deletions leave at the front.
        self._docs: OrderedDict[int, _Doc[P]] = OrderedDict()
        self._by_key: dict[Hashable, int] = {}
        self._postings: dict[str, dict[int, float]] = {}
        self._next_id = 0
        self._idf: dict[str, float] = {}
        self._idf_size = 0
        self._changes = 0
        self._generation = 0

    def __len__(self) -> int:
        return len(self._docs)

    def add(self, key: Hashable, weights: Mapping[str, float], payload: P) -> list[P]:
        """Index (or re-index) `key` as the newest document; the payloads this displaced.

        Displaced: the previous payload of `key`, then the oldest documents evicted to
        stay within `max_docs`.
        """
        previous = self.remove(key)
        displaced = [] if previous is None else [previous]
        doc_id = self._next_id
        self._next_id += 1
        self._docs[doc_id] = _Doc(key, dict(weights), payload)
        self._by_key[key] = doc_id
        for term, weight in weights.items():
            self._postings.setdefault(term, {})[doc_id] = weight
        self._changes += 1
        while len(self._docs) > self.max_docs:
            oldest_id, oldest = self._docs.popitem(last=False)
            del self._by_key[oldest.key]
            self._unpost(oldest_id, oldest)
            displaced.append(oldest.payload)
        return displaced

    def remove(self, key: Hashable) -> P | None:
        """Drop `key`; its payload, or None when it was not indexed."""
        doc_id = self._by_key.pop(key, None)
        if doc_id is None:
            return None
        doc = self._docs.pop(doc_id)
        self._unpost(doc_id, doc)
        return doc.payload

    def _unpost(self, doc_id: int, doc: _Doc[P]) -> None:
        for term in doc.weights:
            plist = self._postings[term]
            del plist[doc_id]
            if not plist:
                del self._postings[term]
                self._idf.pop(term, None)
        self._changes += 1

    def terms(self) -> frozenset[str]:
        """The vocabulary of the indexed documents."""
        return frozenset(self._postings)

    def idf(self, term: str) -> float:
        """Smoothed idf, ln((1 + N) / (1 + df)) + 1, from the current snapshot."""
        value = self._idf.get(term)
        if value is None:
            plist = self._postings.get(term)
            value = math.log((1 + len(self._docs)) / (1 + len(plist or ()))) + 1.0
            if plist:  # caching unseen query words would grow without bound
                self._idf[term] = value
        return value

    def search(
        self, weights: Mapping[str, float], k: int, exclude: Hashable | None = None
    ) -> list[tuple[Hashable, float, P]]:
        """The `k` most cosine-similar documents among the candidates, best first.

        Equal similarities keep a deterministic order (by key within the top `k`).
        `exclude` (a key) is never returned.
        """
        if not self._docs or k < 1:
            return []
        self._refresh_if_drifted()
        idf = self.idf
        # Only the most informative query terms take part: a long description then costs
        # no more than a short one, and the terms dropped are the ones weighing least.
        scaled = sorted(((w * idf(t), t) for t, w in weights.items()), reverse=True)[
            : self.max_query_terms
        ]
        # cosine = sum_t (q_t idf_t)(d_t idf_t) / (|q| |d|): fold both idfs into the query.
        factors = {t: qw * idf(t) for qw, t in scaled}
        qnorm = math.sqrt(sum(qw * qw for qw, _ in scaled))
        if qnorm == 0.0:
            return []
        docs, generation = self._docs, self._generation
        ranked = []
        for doc_id, dot in self._dots(factors).items():
            doc = docs[doc_id]
            norm = doc.norm if doc.norm_generation == generation else self._norm(doc)
            ranked.append((dot / (qnorm * norm), doc_id))
        best = sorted(ranked, reverse=True)[: k + 1]  # one spare in case `exclude` is in it
        hits = [(docs[d].key, sim, docs[d].payload) for sim, d in best if docs[d].key != exclude]
        hits.sort(key=lambda hit: (-hit[1], str(hit[0])))
        return [(key, min(1.0, sim), payload) for key, sim, payload in hits[:k]]

    def _dots(self, factors: Mapping[str, float]) -> dict[int, float]:
        """Exact dot products with the query for at most `max_candidates` documents.

        Step 1 walks the postings of the rarest terms, while the walk stays within
        `walk_budget` postings: cheap, and rare terms are what make cases alike.
        Step 2 keeps the `max_candidates` best of them (ties: the first walked), topped
        up with the most recent holders of the next term when too few, and adds the
        remaining, commoner terms to those few only, through C-level set intersections.
        """
        postings = self._postings
        terms = sorted((t for t in factors if t in postings), key=lambda t: (len(postings[t]), t))
        acc: dict[int, float] = {}
        budget = self.walk_budget
        walked = 0
        for term in terms:
            plist = postings[term]
            if len(plist) > budget:
                break
            budget -= len(plist)
            walked += 1
            factor = factors[term]
            for doc_id, weight in plist.items():
                acc[doc_id] = acc.get(doc_id, 0.0) + factor * weight
        rest = terms[walked:]
        # A C-level sort (stable: ties keep walk order, rarest term first) beats a heap here.
        ranked = sorted(acc.items(), key=itemgetter(1), reverse=True)[: self.max_candidates]
        chosen = dict.fromkeys(doc_id for doc_id, _ in ranked)
        if rest and len(chosen) < self.max_candidates:
            room = self.max_candidates - len(chosen)
            chosen.update(dict.fromkeys(islice(reversed(postings[rest[0]]), room)))
        dots = {doc_id: acc.get(doc_id, 0.0) for doc_id in chosen}
        for term in rest:
            plist, factor = postings[term], factors[term]
            for doc_id in dots.keys() & plist.keys():
                dots[doc_id] += factor * plist[doc_id]
        return dots

    def _norm(self, doc: _Doc[P]) -> float:
        if doc.norm_generation != self._generation:
            norm = math.sqrt(sum((w * self.idf(t)) ** 2 for t, w in doc.weights.items()))
            doc.norm = norm or 1.0  # an empty document never divides by zero
            doc.norm_generation = self._generation
        return doc.norm

    def _refresh_if_drifted(self) -> None:
        if self._changes > REFRESH_FRACTION * self._idf_size or self._idf_size == 0:
            self._idf.clear()
            self._idf_size = max(len(self._docs), 1)
            self._changes = 0
            self._generation += 1
