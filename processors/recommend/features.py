"""Hashed word and character n-gram counts of a whole batch of texts, in a few numpy calls.

The recommender's features are the classic text-classification ones: word 1-2 grams and
character 2-4 grams inside whitespace-delimited words (each padded with a space, as
scikit-learn's `char_wb` analyzer does). scikit-learn's vectorizers build them in a Python
loop per n-gram, about 150 µs per support case; the processor loop's budget for a whole
recommendation is 200 µs. So the n-grams of every text in a batch are hashed at once here:
the batch becomes one array of code points, and a polynomial hash over prefix sums (uint64
arithmetic, which wraps modulo 2**64) gives every word, word pair and character window its
bucket without a Python loop per token. Hashes are stable across processes and runs (no
`hash()`, whose seed changes per process), so a model fitted in one process scores in
another, and the same text always gets the same features.

Collisions: each family has 2**20 buckets; a history of 50,000 cases uses under 10% of them.
The batch is one array, so its size is bounded by the batch, not by any single text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

BUCKET_BITS = 20
BUCKETS = 1 << BUCKET_BITS  # per family
# Families, in column order: words (1-2 grams), characters, tags. Tags (structured fields
# such as "queue=billing") are a family of their own, normalised on their own, so that a
# long text does not drown the few fields that route a case.
FAMILIES = 3
CHAR_NGRAMS = (2, 4)  # inclusive range of character window lengths
_SEPARATOR = 0  # code point between texts of a batch; never inside one (see `_prepare`)
_SPACE = 32
_BASE = np.uint64(0x100000001B3)  # odd, so it has an inverse modulo 2**64
_BASE_INV = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: spreads hashes over buckets
_PAIR = np.uint64(0xC2B2AE3D27D4EB4F)
_SHIFT = np.uint64(64 - BUCKET_BITS)


@dataclass(frozen=True, slots=True)
class Counts:
    """Raw n-gram counts of a batch: row i is text i; columns are the two bucket families."""

    matrix: sparse.csr_matrix  # float32, shape (texts, FAMILIES * BUCKETS), sorted indices


@functools.cache
def _word_table() -> np.ndarray:
    """Which code points of the Basic Multilingual Plane belong to words (regex `\\w`)."""
    return np.fromiter(
        (chr(c).isalnum() or c == 0x5F for c in range(0x10000)), dtype=np.bool_, count=0x10000
    )


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**i and BASE**-i modulo 2**64 for i in [0, n]."""
    up = np.full(n + 1, _BASE, dtype=np.uint64)
    up[0] = 1
    down = np.full(n + 1, _BASE_INV, dtype=np.uint64)
    down[0] = 1
    return np.cumprod(up, dtype=np.uint64), np.cumprod(down, dtype=np.uint64)


def _finish(h: np.ndarray, salt: int) -> np.ndarray:
    """A bucket in [0, BUCKETS) for each 64-bit polynomial hash: the top bits of a
    multiplicative hash (the polynomial already folds every code point into them)."""
    return (((h ^ np.uint64(salt)) * _MIX) >> _SHIFT).astype(np.int64)


def _prepare(texts: Sequence[str]) -> str:
    """One string for the batch: each text lower-cased, whitespace runs made one space,
    padded with a space on both sides, texts separated by a NUL (removed from the texts);
    no two spaces are ever adjacent."""
    return "\0".join(_padded(" ".join(t.replace("\0", " ").lower().split())) for t in texts)


def _padded(text: str) -> str:
    # An empty text is one space, not two: a window of spaces only would carry nothing.
    return f" {text} " if text else " "


def count_ngrams(texts: Sequence[str], tags: Sequence[Sequence[str]] | None = None) -> Counts:
    """Counts of word 1-2 grams, character 2-4 grams within words, and `tags` (whole
    tokens such as "queue=billing"), for every text of the batch.

    Words are maximal runs of letters, digits and underscores (as the regex `\\w+`);
    a word pair never spans two texts. Character windows stay inside one space-delimited
    chunk, the spaces around it included, like scikit-learn's `char_wb`.
    """
    n_texts = len(texts)
    joined = _prepare(texts)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    n = codes.size
    up, down = _powers(n)
    # Polynomial hash of codes[s:e] = (prefix[e] - prefix[s]) * BASE**-s (mod 2**64).
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(codes.astype(np.uint64) * up[:n], out=prefix[1:])
    doc_of = np.cumsum(codes == _SEPARATOR)  # text index at each position

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []

    # Words: runs of word characters. Code points beyond the BMP (emoji) are not word chars.
    in_bmp = codes < 0x10000
    is_word = np.zeros(n, dtype=np.bool_)
    is_word[in_bmp] = _word_table()[codes[in_bmp]]
    edges = np.diff(np.concatenate(([0], is_word.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size:
        word_hash = (prefix[ends] - prefix[starts]) * down[starts]
        word_doc = doc_of[starts]
        rows.append(word_doc)
        cols.append(_finish(word_hash, 1))
        same = word_doc[1:] == word_doc[:-1]
        pair_hash = word_hash[:-1][same] * _PAIR + word_hash[1:][same]
        rows.append(word_doc[:-1][same])
        cols.append(_finish(pair_hash, 2))

    # Character windows of each length: no separator inside, no space strictly inside.
    # Their hashes roll forward over contiguous slices (h_{n+1}[i] = h_n[i] * BASE +
    # c[i + n]): no gathers, which is what keeps this cheap for a whole batch.
    char = codes.astype(np.uint64)
    breaks = np.zeros(n + 1, dtype=np.int32)
    np.cumsum((codes == _SPACE) | (codes == _SEPARATOR), out=breaks[1:])
    is_sep = codes == _SEPARATOR
    low, high = CHAR_NGRAMS
    window = char
    for size in range(2, high + 1):
        if n < size:
            break
        window = window[:-1] * _BASE + char[size - 1 :]
        if size < low:
            continue
        count = n - size + 1
        # Breaks strictly inside [i, i + size): breaks[i + size - 1] - breaks[i + 1].
        ok = breaks[size - 1 : size - 1 + count] == breaks[1 : 1 + count]
        ok &= ~is_sep[:count] & ~is_sep[size - 1 :]
        at = np.flatnonzero(ok)
        rows.append(doc_of[at])
        cols.append(_finish(window[at], 10 + size) + BUCKETS)

    if tags is not None:
        tag_rows, tag_cols = _tag_entries(tags)
        rows.append(tag_rows)
        cols.append(tag_cols)

    # One sort groups equal (row, column) pairs: their run lengths are the counts.
    width = FAMILIES * BUCKETS
    parts = [r * width + c for r, c in zip(rows, cols, strict=True)]
    keys = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    if keys.size:
        first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        counts = np.diff(np.append(first, keys.size))
        keys = keys[first]
    else:
        counts = np.zeros(0, dtype=np.int64)
    indptr = np.zeros(n_texts + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // width, minlength=n_texts), out=indptr[1:])
    matrix = sparse.csr_matrix(
        (counts.astype(np.float32), (keys % width).astype(np.int32), indptr),
        shape=(n_texts, width),
    )
    return Counts(matrix)


def _tag_entries(tags: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every whole-token tag, in the tag family."""
    flat = [(i, tag.lower()) for i, group in enumerate(tags) for tag in group]
    if not flat:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    joined = "\0".join(tag for _, tag in flat)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = codes.size
    up, down = _powers(n)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(codes * up[:n], out=prefix[1:])
    lengths = np.fromiter((len(tag) for _, tag in flat), dtype=np.int64, count=len(flat))
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    ends = starts + lengths
    tag_hash = (prefix[ends] - prefix[starts]) * down[starts]
    row = np.fromiter((i for i, _ in flat), dtype=np.int64, count=len(flat))
    return row, _finish(tag_hash, 3) + 2 * BUCKETS
