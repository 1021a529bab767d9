"""The recommender's memory: labelled cases (a bounded window), the model fitted on them,
and the evidence it gives for a batch of cases.

Feed it every event of the `cases` and `reviews` topics with `observe` (other kinds are
ignored). It keeps, per case, only the allowlisted, redacted view (`restrict`), so nothing
a model may not see is ever learned. Labels, each the latest by event time:
- category: `CaseResolved.category`, or a `CaseReclassified` (a correction);
- next action: the first of `CaseResolved.actions_taken` (none taken: "no action"), or a
  `ReviewSubmitted` with verdict `override` (a correction: its `override_action`).
A `CaseReopened` withdraws a case's labels until it is labelled again. The window holds
the `max_cases` most recently labelled cases; unlabelled open cases are bounded too.

The model (`fitting`, `model`) is fitted:
- by `refit()`: blocking, in this process; call it once the replay at start-up is done;
- in the background, driven by `maintain()`: once `refit_every` labels changed, or
  `refit_after_s` seconds after the last refit started when at least one did, a child
  process (a fresh interpreter, `_Child`: never a fork of a process that runs librdkafka
  threads) fits on a snapshot of the window. A helper thread of this process writes the snapshot
  in small pickled chunks and reads the fitted arrays back (`np.load`, whose reads release
  the GIL); `maintain()` then swaps the new model in with one assignment. This process
  never holds the interpreter for the fit itself, only for chunks of a few milliseconds.

Corrections take effect at once in three ways, before any refit: similar cases shown as
evidence carry their current labels; the neighbours' vote counts their current category;
and a *precedent* (a corrected case whose text has the very same words as the case at
hand, ignoring case, punctuation and redacted values) decides the category and action.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from processors.recommend.answer import Neighbor
from processors.recommend.case_view import CaseView, apply_update, epoch_ms, open_view
from processors.recommend.features import count_ngrams
from processors.recommend.fitting import Example, fit
from processors.recommend.model import NEIGHBOURS, FittedModel
from processors.recommend.redacted_view import ModelInput, Visibility, model_input, restrict
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseReclassified,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    Event,
    ReviewSubmitted,
)

log = logging.getLogger(__name__)

# Paths whose text is prose; any other visible path becomes one tag, "queue=billing".
FREE_TEXT = ("subject", "description")
_WORDS = re.compile(r"[^\W_]+")
TOP_CATEGORIES = 5  # categories an evidence lists (the rationale, the LLM prompt)
PRECEDENTS_PER_TEXT = 8  # corrected cases kept per text, so an earlier one can apply at its time
_CHUNK = 250  # examples per pickled chunk, and rows per step of an installation:
# each step holds the GIL for well under a millisecond before it yields


def document(inp: ModelInput) -> tuple[str, tuple[str, ...]]:
    """What the model reads of a model input: the free text, and the other fields as tags."""
    text = "\n".join(str(inp.fields[p]) for p in FREE_TEXT if inp.fields.get(p) is not None)
    tags = tuple(f"{path}={value}" for path, value in inp.fields.items() if path not in FREE_TEXT)
    return text, tags


def signature(text: str) -> str:
    """The words of a text, lower-cased, in order: equal for texts a precedent applies to."""
    return " ".join(_WORDS.findall(text.lower()))


@dataclass(frozen=True, slots=True)
class Label:
    """A label and when it was given; a later event time wins, equal times the later event."""

    at: datetime
    corrected: bool  # from an operator's correction (reclassify, override)


@dataclass(frozen=True, slots=True)
class Given:
    """One labelling event of a case, kept so that its labels can be read as they were at
    any time (point-in-time): a resolution, a reclassification or an override."""

    ms: int  # event time, epoch ms
    category: str | None
    actions: tuple[ActionSpec, ...] | None
    corrected: bool


NEVER = np.iinfo(np.int64).max  # "no label yet" as a time: after every cut-off


@dataclass(frozen=True, slots=True)
class Labelled:
    """A case in the window: its restricted view, what the model reads, and its labels."""

    view: CaseView
    text: str
    tags: tuple[str, ...]
    category: str | None = None
    category_label: Label | None = None
    actions: tuple[ActionSpec, ...] | None = None  # None: no action label yet
    actions_label: Label | None = None
    given: tuple[Given, ...] = ()  # every labelling event, by time (equal times: arrival)

    @property
    def corrected(self) -> bool:
        return any(
            lab is not None and lab.corrected for lab in (self.category_label, self.actions_label)
        )

    @property
    def first_ms(self) -> int:
        """When the case first had a category (NEVER: not yet)."""
        return next((g.ms for g in self.given if g.category is not None), NEVER)

    @property
    def last_ms(self) -> int:
        """When its labels last changed: before that time they may have been others."""
        return self.given[-1].ms if self.given else NEVER

    def at(self, cut_ms: int) -> tuple[str | None, tuple[ActionSpec, ...] | None, int | None]:
        """(category, actions, when they were corrected) from the events before `cut_ms`
        only: the labels as a recommendation at that time saw them. The last is the time
        of the latest of those labels that came from a correction (None: neither did)."""
        category: str | None = None
        actions: tuple[ActionSpec, ...] | None = None
        by_category: int | None = None
        by_actions: int | None = None
        for g in self.given:
            if g.ms >= cut_ms:
                break
            if g.category is not None:
                category, by_category = g.category, g.ms if g.corrected else None
            if g.actions is not None:
                actions, by_actions = g.actions, g.ms if g.corrected else None
        corrections = [t for t in (by_category, by_actions) if t is not None]
        return category, actions, max(corrections) if corrections else None

    def as_of(self, cut_ms: int | None) -> Labelled:
        """This record with the labels it had before `cut_ms` (None: as it is now)."""
        if cut_ms is None or self.last_ms < cut_ms:
            return self
        category, actions, _ = self.at(cut_ms)
        return replace(self, category=category, actions=actions)

    def example(self) -> Example:
        action = None if self.actions is None else (self.actions[0].name if self.actions else "")
        return Example(self.text, self.tags, self.category, action)


@dataclass(frozen=True, slots=True)
class Precedent:
    """A corrected case with the same words as the case at hand."""

    case_id: str
    category: str | None
    actions: tuple[ActionSpec, ...] | None


@dataclass(frozen=True, slots=True)
class Evidence:
    """The model's view of one case: probabilities, similar cases and any precedent."""

    categories: tuple[tuple[str, float], ...]  # the TOP_CATEGORIES most probable, best first
    parts: tuple[float, float, float]  # linear, network and vote probability of the top one
    actions: dict[str, float]  # action name ("" = none) -> probability, every known action
    similar: tuple[Neighbor, ...]
    precedent: Precedent | None
    model_version: str


@dataclass(frozen=True, slots=True)
class _Installed:
    """A model with the snapshot it was fitted on and its live per-row labels."""

    model: FittedModel
    case_ids: tuple[str, ...]  # case id of each history row
    row_of: dict[str, int]
    row_category: np.ndarray  # current category index per row (-1: unlabelled/evicted/new)
    row_action: np.ndarray  # current first-action index per row (-1 likewise)
    row_first_ms: np.ndarray  # int64: when each row first had a category (NEVER: not now)
    row_last_ms: np.ndarray  # int64: when each row's labels last changed


class Memory:
    """Labelled-case window and model of one process; see the module docstring."""

    def __init__(
        self,
        visibility: Visibility,
        *,
        max_cases: int = 50_000,
        max_open: int = 50_000,
        refit_every: int = 1_000,
        refit_after_s: float = 300.0,
        k: int = NEIGHBOURS,
        seed: int = 0,
    ) -> None:
        if min(max_cases, max_open, refit_every, k) < 1 or refit_after_s <= 0:
            raise ValueError("bounds, k and refit intervals must be positive")
        self.visibility = visibility
        self.max_cases = max_cases
        self.max_open = max_open
        self.refit_every = refit_every
        self.refit_after_s = refit_after_s
        self.k = k
        self.seed = seed
        self._open: OrderedDict[str, CaseView] = OrderedDict()
        self._cases: OrderedDict[str, Labelled] = OrderedDict()
        # signature -> the corrected cases with those words, oldest correction first
        self._precedents: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._max_label_ms = -1  # the latest label time ever given: no cut-off is needed above
        self._watermark_ms: int | None = None  # refits learn only labels before it
        self._snapshot_cut: int | None = None  # the watermark of the latest snapshot
        self._held_back = 0  # records that snapshot left out or cut (labels at/after it)
        self._categories: Counter[str] = Counter()
        self._actions: Counter[str] = Counter()
        self._installed: _Installed | None = None
        self._changed = 0  # label changes since the snapshot of the newest (running) fit
        self._since_snapshot: set[str] = set()  # cases relabelled since that snapshot
        self._started_at: float | None = None
        self._job: Future[_Installed] | None = None
        self._helper: ThreadPoolExecutor | None = None
        self._child: _Child | None = None
        self._workdir: Path | None = None
        self.refit_failures = 0
        self._refitted = False
        self._closed = False
        self._lock = threading.Lock()  # guards the helpers' creation against close()

    # --- what it knows ------------------------------------------------------------------

    @property
    def labelled_count(self) -> int:
        """How many labelled cases the window holds now."""
        return len(self._cases)

    @property
    def categories(self) -> Counter[str]:
        """Current categories of the window's cases, with their counts."""
        return +self._categories

    @property
    def actions(self) -> Counter[str]:
        """Action names of the window's cases (once per case), with their counts."""
        return +self._actions

    @property
    def model_version(self) -> str | None:
        """Version of the model in use (a digest of what it was fitted on), if any."""
        return self._installed.model.version if self._installed is not None else None

    @property
    def refitting(self) -> bool:
        """Is a background refit under way?"""
        return self._job is not None

    def labelled(self, case_id: str) -> Labelled | None:
        """The window's record of a case, if it is labelled."""
        return self._cases.get(case_id)

    # --- learning -----------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Learn from one event of `cases` or `reviews`; other kinds are ignored. Cheap:
        dictionary work, plus the allowlist and redaction of a case's text."""
        if isinstance(event, CaseOpened):
            if event.case_id not in self._cases:
                self._remember(restrict(open_view(event), self.visibility))
        elif isinstance(event, CaseUpdated):
            self._update(event)
        elif isinstance(event, CaseResolved):
            actions = event.actions_taken
            self._label(event.case_id, event.category, actions, Label(event.occurred_at, False))
        elif isinstance(event, CaseReclassified):
            self._label(event.case_id, event.category, None, Label(event.occurred_at, True))
        elif isinstance(event, ReviewSubmitted):
            if event.verdict == "override" and event.override_action is not None:
                label = Label(event.occurred_at, True)
                self._label(event.case_id, None, (event.override_action,), label)
        elif isinstance(event, CaseReopened):
            self._reopen(event.case_id)

    def replay(self, events: Iterable[Event]) -> int:
        """Observe every event in order (a start-up rebuild); how many were read."""
        count = 0
        for event in events:
            self.observe(event)
            count += 1
        return count

    def _remember(self, view: CaseView) -> None:
        self._open[view.case_id] = view
        self._open.move_to_end(view.case_id)
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)

    def _update(self, event: CaseUpdated) -> None:
        view = self._open.get(event.case_id)
        if view is not None:
            self._open[event.case_id] = restrict(apply_update(view, event), self.visibility)
            return
        record = self._cases.get(event.case_id)
        if record is not None:
            updated = restrict(apply_update(record.view, event), self.visibility)
            text, tags = document(model_input(updated, self.visibility))
            if (text, tags) != (record.text, record.tags):
                self._changed_record(
                    event.case_id, record, replace(record, view=updated, text=text, tags=tags)
                )
            else:
                self._cases[event.case_id] = replace(record, view=updated)

    def _label(
        self,
        case_id: str,
        category: str | None,
        actions: tuple[ActionSpec, ...] | None,
        label: Label,
    ) -> None:
        """Apply the labels an event gives, each only if it is the latest by event time."""
        record = self._cases.get(case_id)
        if record is None:
            view = self._open.pop(case_id, None)
            if view is None:
                return  # opened before the history we kept: there is no text to learn
            text, tags = document(model_input(view, self.visibility))
            record = Labelled(view, text, tags)
        given = Given(epoch_ms(label.at), category, actions, label.corrected)
        if given in record.given and case_id in self._cases:
            return  # a redelivery: nothing new
        # Kept in time order (a label older than the current one still tells what an
        # earlier recommendation saw); bisect_right: equal times keep arrival order.
        at = bisect.bisect_right([g.ms for g in record.given], given.ms)
        new = replace(record, given=(*record.given[:at], given, *record.given[at:]))
        self._max_label_ms = max(self._max_label_ms, given.ms)
        if category is not None and _later(label, record.category_label):
            new = replace(new, category=category, category_label=label)
        if actions is not None and _later(label, record.actions_label):
            new = replace(new, actions=actions, actions_label=label)
        self._changed_record(case_id, record if case_id in self._cases else None, new)

    def _reopen(self, case_id: str) -> None:
        record = self._cases.get(case_id)
        if record is None:
            return
        self._changed_record(case_id, record, None)
        self._remember(record.view)

    def _changed_record(
        self, case_id: str, before: Labelled | None, after: Labelled | None
    ) -> None:
        """Book a record change: counts, the window's order and bound, precedents, the
        live labels of the installed model, and the change counter that drives refits."""
        if before is not None:
            self._count(before, -1)
            del self._cases[case_id]
        if after is not None:
            self._cases[case_id] = after  # the newest labelled case goes last
            self._count(after, +1)
            if after.corrected:
                key = signature(after.text)
                ids = self._precedents.get(key, ())
                kept = (*(i for i in ids if i != case_id), case_id)
                self._precedents[key] = kept[-PRECEDENTS_PER_TEXT:]
                self._precedents.move_to_end(key)
                while len(self._precedents) > self.max_cases:
                    self._precedents.popitem(last=False)
        self._relabel_row(case_id, after)
        self._since_snapshot.add(case_id)
        self._changed += 1
        while len(self._cases) > self.max_cases:
            oldest, evicted = self._cases.popitem(last=False)
            self._count(evicted, -1)
            self._relabel_row(oldest, None)
            self._since_snapshot.add(oldest)

    def _count(self, record: Labelled, sign: int) -> None:
        """Keep the label counts; a count that reaches zero is dropped (so that an empty
        counter means: no category to learn)."""
        names = [] if not record.actions else sorted({a.name for a in record.actions})
        for counter, keys in ((self._categories, [record.category]), (self._actions, names)):
            for key in keys:
                if key is None:
                    continue
                counter[key] += sign
                if counter[key] <= 0:
                    del counter[key]

    def _relabel_row(self, case_id: str, record: Labelled | None) -> None:
        installed = self._installed
        if installed is None:
            return
        _relabel(installed, case_id, record)

    # --- fitting ------------------------------------------------------------------------

    def refit(self, *, in_process: bool = False) -> None:
        """Fit the model on the window now, blocking, and use it.

        Call once after the start-up replay. By default the fit runs in the child process,
        like background refits, so this process never imports scikit-learn nor keeps the
        fit's garbage; `in_process=True` fits here instead (tests, offline evaluation: no
        process to spawn). A window without any category leaves the memory without a model.
        """
        self._refitted = True
        self._started_at = time.monotonic()
        snapshot = self._take_snapshot()
        if not any(r.category is not None for r in snapshot):
            self._installed = None
            return
        if in_process:
            model = fit([record.example() for record in snapshot], seed=self.seed)
            self._install(_installation(model, snapshot))
        else:
            self._install(self._background(snapshot))

    def maintain(self, now: float | None = None) -> bool:
        """Cheap, non-blocking, once per loop iteration: swap in a finished background
        refit, and start one when due. True when a new model was swapped in.

        `now` is a monotonic clock reading (default: time.monotonic()); it only decides
        when to refit, never what a recommendation says.
        """
        now = time.monotonic() if now is None else now
        swapped = False
        job = self._job
        if job is not None and job.done():
            self._job = None
            try:
                self._install(job.result())
                swapped = True
            except Exception:
                # The current model stays; the next due refit tries again.
                self.refit_failures += 1
                log.exception("background refit failed; keeping model %s", self.model_version)
        if self._job is None and self._due(now):
            if self._installed is None:
                # Nothing can be recommended without a model: fit now, blocking, as the
                # first batch does. In the background the low-priority fit can starve
                # behind the very backlog it is needed for.
                self.refit()
                return self._installed is not None
            self._started_at = now
            snapshot = self._take_snapshot()
            if any(r.category is not None for r in snapshot):
                self._job = self._helper_pool().submit(self._background, snapshot)
        return swapped

    def close(self) -> None:
        """Stop background work (a fit under way is abandoned) and remove its files; the
        model in use stays usable, and `refit(in_process=True)` still works."""
        with self._lock:
            self._closed = True
            helper, child, workdir = self._helper, self._child, self._workdir
            self._helper = self._child = self._workdir = None
        if child is not None:
            child.stop()
        if helper is not None:
            helper.shutdown(wait=True, cancel_futures=True)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        self._job = None

    def _due(self, now: float) -> bool:
        """Rule: some label changed, and there is no model yet, or `refit_every` labels
        changed, or `refit_after_s` passed since the last fit started. Labels the last
        snapshot held back (given at or after its watermark) count as changes once the
        watermark has moved past where it was: a backlog's labels join the model as the
        cases after them are recommended."""
        changed = self._changed
        if self._watermark_ms is None or (
            self._snapshot_cut is not None and self._watermark_ms > self._snapshot_cut
        ):
            changed += self._held_back
        if changed == 0 or not self._cases or not self._refitted:
            return False  # the first fit is the first batch's (see `evidence`)
        if self._installed is None or changed >= self.refit_every:
            return True
        return self._started_at is None or now - self._started_at >= self.refit_after_s

    def _take_snapshot(self) -> list[Labelled]:
        """The window as the model may learn it: each case with its labels before the
        watermark (none: as they are now), in a fixed order (first labelled, then case
        id) so that the same labels give the same model whatever order they arrived in.
        Records are immutable: references are enough."""
        self._changed = 0
        self._since_snapshot = set()
        cut = self._snapshot_cut = self._watermark_ms
        self._held_back = 0
        if cut is None:
            snapshot = list(self._cases.values())
        else:
            snapshot = []
            for record in self._cases.values():
                if record.last_ms >= cut:
                    # Its row must get its current labels once installed.
                    self._since_snapshot.add(record.view.case_id)
                    self._held_back += 1
                if record.first_ms < cut:
                    snapshot.append(record.as_of(cut))
        snapshot.sort(key=lambda r: (r.first_ms, r.view.case_id))
        return snapshot

    def _install(self, installed: _Installed) -> None:
        """Swap in a model; labels changed since its snapshot are applied to its rows."""
        for case_id in self._since_snapshot:
            _relabel(installed, case_id, self._cases.get(case_id))
        self._installed = installed

    def _helper_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._helper is None:
                self._helper = ThreadPoolExecutor(1, thread_name_prefix="recommender-refit")
            return self._helper

    def _fitter(self) -> tuple[_Child, Path]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the memory was closed: no more background refits")
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="casegate-recommender-"))
                weakref.finalize(self, shutil.rmtree, self._workdir, True)
            if self._child is None or not self._child.alive():
                self._child = _Child()
            return self._child, self._workdir

    def _background(self, snapshot: list[Labelled]) -> _Installed:
        """Ship the snapshot to the child, wait for its fit, read the model back (on the
        helper thread for background refits, on the caller's for a blocking one)."""
        child, workdir = self._fitter()
        stem = f"fit-{time.monotonic_ns()}"
        examples, model_dir = workdir / f"{stem}.pkl", workdir / stem
        try:
            with examples.open("wb") as out:
                for start in range(0, len(snapshot), _CHUNK):
                    chunk = [r.example() for r in snapshot[start : start + _CHUNK]]
                    pickle.dump(chunk, out, protocol=pickle.HIGHEST_PROTOCOL)
                    time.sleep(0)  # let the loop's thread take the interpreter back
            child.fit(examples, model_dir, self.seed)
            return _installation(FittedModel.load(model_dir), snapshot)
        finally:
            examples.unlink(missing_ok=True)
            shutil.rmtree(model_dir, ignore_errors=True)

    # --- scoring ------------------------------------------------------------------------

    def evidence(
        self,
        inputs: Sequence[ModelInput],
        case_ids: Sequence[str],
        as_of: Sequence[int | None] | None = None,
    ) -> list[Evidence | None]:
        """The model's evidence for each case of a batch, in one scoring call; None for
        every case while there is no model (no labelled history yet).

        Point-in-time: `as_of` gives each case's time (epoch ms; None: no cut-off). Its
        similar cases, their vote and its precedent come only from labels given before
        that time, as they were then, whatever order the labels arrived in. The model's
        weights are not cut per case (see `refit`): a later refit only learns labels
        before the latest case time scored so far (the watermark).

        A memory whose `refit` was never called fits itself first (blocking, as `refit()`,
        on the labels before the batch's earliest case): the processor's first batch, and
        callers without a loop; once it was called, scoring never fits, it waits for
        `maintain()`.
        """
        cuts = [NEVER if t is None else t for t in as_of] if as_of is not None else None
        if not self._refitted and self._job is None and self._cases:
            if cuts:
                self._watermark_ms = min(cuts) if min(cuts) < NEVER else None
            self.refit()
        if cuts:
            top_cut = max(cuts)
            if self._watermark_ms is not None:
                self._watermark_ms = None if top_cut == NEVER else max(self._watermark_ms, top_cut)
        installed = self._installed
        if installed is None or not inputs:
            return [None] * len(inputs)
        model = installed.model
        docs = [document(inp) for inp in inputs]
        counts = count_ngrams([text for text, _ in docs], [tags for _, tags in docs])
        # The cut-off costs something only when some label is not older than some case.
        cut = None if cuts is None or min(cuts) > self._max_label_ms else np.array(cuts)
        if cut is None:
            scores = model.score(counts, installed.row_category, installed.row_action, self.k + 1)
        else:
            scores = model.score(
                counts,
                installed.row_category,
                installed.row_action,
                self.k + 1,
                before=(installed.row_first_ms, cut),
                labels=lambda rows: self._labels_at(installed, rows, cut),
            )
        # Converted to Python once per batch: per-element numpy access costs microseconds.
        top = np.argsort(-scores.category, axis=1, kind="stable")[:, :TOP_CATEGORIES]
        top_p = np.round(np.take_along_axis(scores.category, top, axis=1), 4).tolist()
        first = top[:, :1]
        parts = np.round(
            np.hstack(
                [
                    np.take_along_axis(a, first, axis=1)
                    for a in (scores.linear, scores.network, scores.vote)
                ]
            ),
            4,
        ).tolist()
        action_p = np.round(scores.action, 4).tolist()
        rows = scores.neighbours.tolist()
        sims = np.round(scores.similarity.astype(np.float64), 4).tolist()
        cats, acts = model.categories, model.actions
        out: list[Evidence | None] = []
        for i, case_id in enumerate(case_ids):
            out.append(
                Evidence(
                    tuple(zip([cats[j] for j in top[i].tolist()], top_p[i], strict=True)),
                    (parts[i][0], parts[i][1], parts[i][2]),
                    dict(zip(acts, action_p[i], strict=True)),
                    self._similar(installed, rows[i], sims[i], case_id, cuts[i] if cuts else None),
                    (
                        self._precedent(docs[i][0], case_id, cuts[i] if cuts else NEVER)
                        if self._precedents
                        else None
                    ),
                    model.version,
                )
            )
        return out

    def _labels_at(
        self, installed: _Installed, rows: np.ndarray, cut: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Category and action indices of neighbour rows (B x k) as they were before each
        case's cut-off: the rows' current labels, except the few whose labels changed at
        or after it, looked up in their records (-1: no label then)."""
        cats = np.where(rows >= 0, installed.row_category[rows], -1)
        acts = np.where(rows >= 0, installed.row_action[rows], -1)
        stale = (rows >= 0) & (installed.row_last_ms[rows] >= cut[:, None])
        model = installed.model
        for i, j in zip(*np.nonzero(stale), strict=True):
            record = self._cases.get(installed.case_ids[rows[i, j]])
            category, actions, _ = record.at(int(cut[i])) if record else (None, None, None)
            cats[i, j] = _index(model.categories, category)
            action = None if actions is None else (actions[0].name if actions else "")
            acts[i, j] = _index(model.actions, action)
        return cats, acts

    def _similar(
        self,
        installed: _Installed,
        rows: list[int],
        sims: list[float],
        case_id: str,
        cut: int | None = None,
    ) -> tuple[Neighbor, ...]:
        found = []
        for row, sim in zip(rows, sims, strict=True):
            if row < 0:
                break  # no more rows labelled before the cut-off
            other = installed.case_ids[row]
            record = self._cases.get(other)
            if other == case_id or record is None:
                continue  # the case itself, or no longer labelled: not evidence
            category, actions = record.category, record.actions
            if cut is not None and record.last_ms >= cut:
                category, actions, _ = record.at(cut)
            if category is None:
                continue
            found.append(Neighbor(other, sim, category, actions or ()))
            if len(found) == self.k:
                break
        return tuple(found)

    def _precedent(self, text: str, case_id: str, cut: int) -> Precedent | None:
        """The case corrected most recently before `cut` with the same words, with its
        labels as they were then."""
        best: tuple[int, str, Labelled] | None = None
        for other in self._precedents.get(signature(text), ()):
            record = self._cases.get(other)
            if other == case_id or record is None:
                continue
            _, _, corrected = record.at(cut)
            if corrected is not None and (best is None or corrected >= best[0]):
                best = (corrected, other, record)
        if best is None:
            return None
        category, actions, _ = best[2].at(cut)
        return Precedent(best[1], category, actions)


def freeze_heap() -> None:
    """Take everything alive now (the replayed history, the fitted model) out of the
    garbage collector's walks: it lives as long as the process. Walked on every full
    collection, it cost about a third of a recommendation's CPU with a 20,000-case history
    (0.28 -> 0.18 ms per case). Call once, after the start-up replay and fit; what is
    learned later is collected as usual."""
    gc.collect()
    gc.freeze()


def _later(label: Label, current: Label | None) -> bool:
    return current is None or label.at >= current.at


def _relabel(installed: _Installed, case_id: str, record: Labelled | None) -> None:
    """Give a history row its case's current labels (-1: unknown to the model, or gone)."""
    row = installed.row_of.get(case_id)
    if row is None:
        return
    model = installed.model
    category = record.category if record is not None else None
    action = record.example().action if record is not None else None
    installed.row_category[row] = _index(model.categories, category)
    installed.row_action[row] = _index(model.actions, action)
    installed.row_first_ms[row] = record.first_ms if record is not None else NEVER
    installed.row_last_ms[row] = record.last_ms if record is not None else NEVER


def _index(names: tuple[str, ...], name: str | None) -> int:
    return names.index(name) if name is not None and name in names else -1


def _installation(model: FittedModel, snapshot: list[Labelled]) -> _Installed:
    """The model with its rows' case ids and current labels. Built on the helper thread
    for background refits, in small steps that yield the GIL to the loop's thread."""
    rows = model.history_rows.tolist()
    case_ids: list[str] = []
    row_of: dict[str, int] = {}
    first = np.empty(len(rows), dtype=np.int64)
    last = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), _CHUNK * 20):
        for row, index in enumerate(rows[start : start + _CHUNK * 20], start):
            record = snapshot[index]
            case_id = record.view.case_id
            case_ids.append(case_id)
            row_of[case_id] = row
            first[row], last[row] = record.first_ms, record.last_ms
        time.sleep(0)
    return _Installed(
        model,
        tuple(case_ids),
        row_of,
        model.row_category.copy(),
        model.row_action.copy(),
        first,
        last,
    )


class _Child:
    """The fitting process: a fresh interpreter (`python -m processors.recommend.fitter`),
    exec'd at once like multiprocessing's "spawn" (no Python runs in a forked copy of this
    process, whose librdkafka threads would not survive it), and, unlike multiprocessing,
    without re-running this process's __main__. Requests and answers are pickled over its
    stdin and stdout; it exits when its stdin closes (this process stopped or died)."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The child imports this very package, wherever this process found it.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "processors.recommend.fitter"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def alive(self) -> bool:
        return self._process.poll() is None

    def fit(self, examples: Path, model_dir: Path, seed: int) -> str:
        """Blocks (without the GIL: pipe I/O) until the child wrote the model; its version."""
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("the fitting process has no pipes")
        try:
            pickle.dump((str(examples), str(model_dir), seed), stdin)
            stdin.flush()
            outcome, detail = pickle.load(stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            raise RuntimeError(f"the fitting process went away: {exc!r}") from exc
        if outcome != "ok":
            raise RuntimeError(f"refit in the child process failed: {detail}")
        return str(detail)

    def stop(self) -> None:
        self._process.kill()
        self._process.wait(10)
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a request still buffered: dropped
                    pipe.close()
