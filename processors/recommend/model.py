"""A fitted recommender model as plain numpy arrays, and its batched scoring.

Fitting needs scikit-learn (`processors.recommend.fitting`); scoring does not: a fitted
model is a handful of arrays (feature weights, three classifier heads, the history's
embeddings) and one `score` call per batch of cases does, in a few matrix products:

1. TF-IDF: the hashed n-gram counts (`features`) mapped to the model's columns, sublinear
   tf times idf, each family (words, characters, tags) L2-normalised on its own;
2. one sparse product with the stacked first-layer weights of every head: the linear
   category model (multinomial logistic regression), the hidden layer of the category
   network (one ReLU layer), and the linear next-action model;
3. the network's output layer, and the cosine similarity of its hidden representation
   (projected on its principal directions, `embed`) with the history's: one dense product
   of the batch against all of history, whose top k are the similar cases; their
   categories vote, weighted by similarity;
4. the category probability is the mean of the three (linear, network, vote), sharpened or
   flattened by the temperature fitted on held-out cases (`fitting`: calibration);
5. the action probability is, likewise, the mean of three: the linear action model, the
   actions history took per category weighted by this case's calibrated category
   probabilities (so that noise in a few cases' text does not decide), and the similar
   cases' vote for their own first actions; with its own temperature.

Saved as one .npy file per array plus meta.json, loaded with `np.load` (whose file read
releases the GIL), so a model fitted in another process can be taken in without holding
the interpreter for long.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from processors.recommend.features import Counts

FAMILY_WEIGHTS = (1.0, 1.0, 2.0)  # words, characters, tags: the norm of each family
# Similar cases taken per case; also the neighbours that vote on the category.
NEIGHBOURS = 10
# Above this many history rows, candidates are pre-selected by lane maxima (see `_top_k`).
_LANES_FROM = 4_096
_LANE_WIDTH = 32
_BLOCK = 64  # cases per similarity product: 64 x 20,000 floats fit the L2 cache


@dataclass(frozen=True, slots=True)
class Weighting:
    """Hashed buckets -> model columns, with the idf of each column."""

    remap: np.ndarray  # int32[FAMILIES * BUCKETS]: column of each bucket, or -1 when not kept
    idf: np.ndarray  # float32[columns]
    starts: np.ndarray  # int64[FAMILIES]: first column of each family (columns keep order)

    def transform(self, counts: Counts) -> sparse.csr_matrix:
        """Rule: sublinear tf x idf over kept columns, each family L2-normalised."""
        m = counts.matrix
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        cols = self.remap[m.indices]
        kept = cols >= 0
        rows, cols = rows[kept], cols[kept]
        data = (1.0 + np.log(m.data[kept])) * self.idf[cols]
        families = self.starts.size
        slot = rows * families + np.searchsorted(self.starts, cols, side="right") - 1
        norms = np.sqrt(np.bincount(slot, weights=data * data, minlength=families * m.shape[0]))
        weight = np.asarray(FAMILY_WEIGHTS)[slot % families]
        data = (data * weight / norms[slot]).astype(np.float32)
        indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=m.shape[0]), out=indptr[1:])
        # The remap is increasing in the bucket, so indices stay sorted within a row.
        return sparse.csr_matrix(
            (data, cols.astype(np.int32), indptr), shape=(m.shape[0], self.idf.size)
        )


@dataclass(frozen=True, slots=True)
class Scores:
    """What the model says about each case of a batch (row i: case i)."""

    category: np.ndarray  # float64[B, C], calibrated, rows sum to 1
    linear: np.ndarray  # float64[B, C] the linear model's probabilities
    network: np.ndarray  # float64[B, C] the network's probabilities
    vote: np.ndarray  # float64[B, C] the similar cases' vote (zeros without labelled rows)
    action: np.ndarray  # float64[B, A], calibrated, over all of `actions` ("" = none)
    action_linear: np.ndarray  # float64[B, A] the linear action model's probabilities
    action_vote: np.ndarray  # float64[B, A] the similar cases' vote for their first actions
    neighbours: np.ndarray  # int64[B, k]: history rows, most similar first (-1: none)
    similarity: np.ndarray  # float32[B, k]


@dataclass(frozen=True, slots=True)
class FittedModel:
    """Everything scoring needs; built by `fitting.fit`, never changed afterwards."""

    version: str
    weighting: Weighting
    first: np.ndarray  # float32[F, C + H + A]: linear category | hidden | linear action
    first_bias: np.ndarray  # float32[C + H + A]
    second: np.ndarray  # float32[H, C]: the network's output layer
    second_bias: np.ndarray  # float32[C]
    projection: np.ndarray  # float32[H, D]: hidden layer -> similarity space (see `embed`)
    history: np.ndarray  # float32[N, D]: each row's unit-norm embedding
    history_rows: np.ndarray  # int64[N]: which fitted example each row is (those with a category)
    row_category: np.ndarray  # int32[N]: category index of each row at fit time, or -1
    row_action: np.ndarray  # int32[N]: first-action index of each row at fit time, or -1
    action_given_category: np.ndarray  # float32[C, A]: P(first action | category), smoothed
    categories: tuple[str, ...]
    actions: tuple[str, ...]  # "" stands for "no catalog action"
    category_temperature: float
    action_temperature: float

    @property
    def hidden_size(self) -> int:
        return int(self.second.shape[0])

    def score(
        self,
        counts: Counts,
        row_category: np.ndarray | None = None,
        row_action: np.ndarray | None = None,
        k: int = NEIGHBOURS,
        *,
        before: tuple[np.ndarray, np.ndarray] | None = None,
        labels: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> Scores:
        """Scores for a batch. `row_category` and `row_action` override the history's
        label indices (the memory's current labels, corrections included); rows at -1
        do not vote.

        Point-in-time: `before` is (each row's first label time, each case's cut-off):
        a case's similar cases are searched only among rows labelled before its cut-off
        (fewer than k: the rest are -1). `labels` maps the neighbour rows (B x k) to their
        category and action indices as the case may see them (default: the row labels).
        """
        cats = self.row_category if row_category is None else row_category
        acts = self.row_action if row_action is None else row_action
        n_cat, n_hidden, n_act = len(self.categories), self.hidden_size, len(self.actions)
        x = self.weighting.transform(counts)
        z = np.asarray(x @ self.first) + self.first_bias
        linear = _softmax(z[:, :n_cat])
        hidden = np.maximum(z[:, n_cat : n_cat + n_hidden], 0.0)
        network = _softmax(_mm(hidden, self.second) + self.second_bias)
        neighbours, similarity = self._similar(embed(hidden, self.projection), k, before)
        if labels is not None:
            cats_nb, acts_nb = labels(neighbours)
        else:
            cats_nb = np.where(neighbours >= 0, cats[neighbours], -1)
            acts_nb = np.where(neighbours >= 0, acts[neighbours], -1)
        vote = _vote(similarity, cats_nb, n_cat)
        category = calibrated((linear, network, vote), self.category_temperature)
        action_linear = _softmax(z[:, n_cat + n_hidden :])
        action_vote = _vote(similarity, acts_nb, n_act)
        action = calibrated(
            (action_linear, _mm(category, self.action_given_category), action_vote),
            self.action_temperature,
        )
        return Scores(
            category,
            linear,
            network,
            vote,
            action,
            action_linear,
            action_vote,
            neighbours,
            similarity,
        )

    def _similar(
        self, unit: np.ndarray, k: int, before: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k history rows by cosine, _BLOCK cases at a time: each block's similarity
        matrix stays in the CPU cache while its top k is taken (one product per block).
        With `before`, rows labelled at or after a case's cut-off are out of its search."""
        found = []
        history = self.history.T.astype(np.float64)  # see `_mm`
        unit64 = unit.astype(np.float64)
        for start in range(0, max(len(unit), 1), _BLOCK):
            sim = (unit64[start : start + _BLOCK] @ history).astype(np.float32)
            if before is not None:
                first, cut = before
                sim[first[None, :] >= cut[start : start + _BLOCK, None]] = -np.inf
            found.append(_top_k(sim, k))
        rows = np.concatenate([f[0] for f in found])
        similarity = np.concatenate([f[1] for f in found])
        rows[np.isneginf(similarity)] = -1  # not a similar case: labelled too late
        return rows, similarity

    def save(self, folder: Path) -> None:
        """Write the model into `folder` (created): arrays as .npy, the rest as JSON."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)
        for name in ("remap", "idf", "starts"):
            np.save(folder / f"{name}.npy", getattr(self.weighting, name), allow_pickle=False)
        meta = {
            "version": self.version,
            "categories": list(self.categories),
            "actions": list(self.actions),
            "category_temperature": self.category_temperature,
            "action_temperature": self.action_temperature,
        }
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> FittedModel:
        """The model `save` wrote into `folder`."""
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        arrays = {name: np.load(folder / f"{name}.npy") for name in _ARRAYS}
        weighting = Weighting(*(np.load(folder / f"{n}.npy") for n in ("remap", "idf", "starts")))
        return cls(
            version=meta["version"],
            weighting=weighting,
            categories=tuple(meta["categories"]),
            actions=tuple(meta["actions"]),
            category_temperature=float(meta["category_temperature"]),
            action_temperature=float(meta["action_temperature"]),
            **arrays,
        )


_ARRAYS = (
    "first",
    "first_bias",
    "second",
    "second_bias",
    "projection",
    "history",
    "history_rows",
    "row_category",
    "row_action",
    "action_given_category",
)


def embed(hidden: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Unit-norm embeddings for similar-case search: the network's hidden layer, made unit
    norm, projected on its D principal directions (half the cost of the dot products
    with all of history, for little loss), and made unit norm again."""
    unit = _unit(hidden.astype(np.float32))
    return _unit(_mm(unit, projection))


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`a @ b` in double precision, returned in the inputs' precision. BLAS rounds a row
    differently with its position in the batch and the batch's size (other kernels,
    other summation orders): about 1e-7 in single precision, enough to move a
    similarity's fourth decimal, 1e-16 in double, which the cast back removes. A case
    must score the same alone, in a backlog's batch, or offline."""
    out = np.result_type(a, b)
    product = a.astype(np.float64, copy=False) @ b.astype(np.float64, copy=False)
    return product.astype(out, copy=False)  # type: ignore[no-any-return]


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms == 0.0, 1.0, norms)).astype(np.float32)  # type: ignore[no-any-return]


def calibrated(parts: tuple[np.ndarray, np.ndarray, np.ndarray], temperature: float) -> np.ndarray:
    """softmax(log(mean) / temperature) of three probability rows; the last (a vote) is
    left out where no neighbour voted (it abstains instead of pulling towards zero)."""
    first, second, vote = parts
    voted = vote.sum(axis=1, keepdims=True) > 0
    mean = np.where(voted, (first + second + vote) / 3.0, (first + second) / 2.0)
    return _softmax(np.log(np.maximum(mean, 1e-12)), temperature)


def _softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _top_k(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest entries of each row, largest first; equal entries by lower column
    among the candidates (exact for distinct values; deterministic always).

    Rows wider than _LANES_FROM are split into _LANE_WIDTH-strided lanes: the k lanes with
    the largest maxima hold the k largest entries (a lane holding one of them has a maximum
    at least as large, and fewer than k other lanes can beat it), so only k * _LANE_WIDTH
    candidates are ranked instead of the whole row.
    """
    b, n = similarity.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((b, 0), dtype=np.int64), np.zeros((b, 0), dtype=np.float32)
    if n > _LANES_FROM:
        lanes = n // _LANE_WIDTH
        body = similarity[:, : lanes * _LANE_WIDTH].reshape(b, _LANE_WIDTH, lanes)
        best = np.argpartition(body.max(axis=1), lanes - k, axis=1)[:, lanes - k :]
        offsets = np.arange(_LANE_WIDTH) * lanes
        candidates = (best[:, :, None] + offsets[None, None, :]).reshape(b, -1)
        tail = np.arange(lanes * _LANE_WIDTH, n)
        candidates = np.concatenate([candidates, np.broadcast_to(tail, (b, tail.size))], axis=1)
    else:
        candidates = np.broadcast_to(np.arange(n), (b, n))
    values = np.take_along_axis(similarity, candidates, axis=1)
    if candidates.shape[1] > k:
        # The k largest candidates, unordered (cheap), then only those k sorted.
        part = np.argpartition(values, candidates.shape[1] - k, axis=1)[:, -k:]
        candidates = np.take_along_axis(candidates, part, axis=1)
        values = np.take_along_axis(values, part, axis=1)
    # By value descending, then column ascending: a deterministic order.
    order = np.lexsort((candidates, -values), axis=1)
    picked = np.take_along_axis(candidates, order, axis=1)
    return picked.astype(np.int64), np.take_along_axis(values, order, axis=1)


def _vote(similarity: np.ndarray, cats: np.ndarray, n_cat: int) -> np.ndarray:
    """Similarity-weighted share of each category among the labelled neighbours (`cats`:
    each neighbour's label index, -1 for none)."""
    b = cats.shape[0]
    votes = np.zeros((b, n_cat), dtype=np.float64)
    if cats.size == 0:
        return votes
    ok = cats >= 0
    rows = np.broadcast_to(np.arange(b)[:, None], cats.shape)
    np.add.at(votes, (rows[ok], cats[ok]), np.maximum(similarity[ok], 0.0))
    total = votes.sum(axis=1, keepdims=True)
    return np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)
