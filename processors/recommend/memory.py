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
from processors.recommend.case_view import CaseView, apply_update, open_view
from processors.recommend.features import count_ngrams
from processors.recommend.fitting import Example, fit
from processors.recommend.model import NEIGHBOURS, FittedModel
from processors.recommend.visibility import ModelInput, Visibility, model_input, restrict
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
class Labelled:
    """A case in the window: its restricted view, what the model reads, and its labels."""

    view: CaseView
    text: str
    tags: tuple[str, ...]
    category: str | None = None
    category_label: Label | None = None
    actions: tuple[ActionSpec, ...] | None = None  # None: no action label yet
    actions_label: Label | None = None

    @property
    def corrected(self) -> bool:
        return any(
            lab is not None and lab.corrected for lab in (self.category_label, self.actions_label)
        )

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
        self._precedents: OrderedDict[str, str] = OrderedDict()  # signature -> case id
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
        new = record
        if category is not None and _later(label, record.category_label):
            new = replace(new, category=category, category_label=label)
        if actions is not None and _later(label, record.actions_label):
            new = replace(new, actions=actions, actions_label=label)
        if new is record and case_id in self._cases:
            return
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
                self._precedents[key] = case_id
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
        if not self._categories:
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
            self._started_at = now
            snapshot = self._take_snapshot()
            if self._categories:
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
        changed, or `refit_after_s` passed since the last fit started."""
        if self._changed == 0 or not self._cases:
            return False
        if self._installed is None or self._changed >= self.refit_every:
            return True
        return self._started_at is None or now - self._started_at >= self.refit_after_s

    def _take_snapshot(self) -> list[Labelled]:
        """The window as it is now, oldest first (records are immutable: references are
        enough, and one list of them is a single allocation)."""
        self._changed = 0
        self._since_snapshot = set()
        return list(self._cases.values())

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
        self, inputs: Sequence[ModelInput], case_ids: Sequence[str]
    ) -> list[Evidence | None]:
        """The model's evidence for each case of a batch, in one scoring call; None for
        every case while there is no model (no labelled history yet).

        A memory whose `refit` was never called fits itself first (blocking, as `refit()`:
        for callers without a loop, such as one-off scripts); once it was called, scoring
        never fits, it waits for `maintain()`.
        """
        if not self._refitted and self._job is None and self._cases:
            self.refit()
        installed = self._installed
        if installed is None or not inputs:
            return [None] * len(inputs)
        model = installed.model
        docs = [document(inp) for inp in inputs]
        counts = count_ngrams([text for text, _ in docs], [tags for _, tags in docs])
        scores = model.score(counts, installed.row_category, installed.row_action, self.k + 1)
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
                    self._similar(installed, rows[i], sims[i], case_id),
                    self._precedent(docs[i][0], case_id) if self._precedents else None,
                    model.version,
                )
            )
        return out

    def _similar(
        self, installed: _Installed, rows: list[int], sims: list[float], case_id: str
    ) -> tuple[Neighbor, ...]:
        found = []
        for row, sim in zip(rows, sims, strict=True):
            other = installed.case_ids[row]
            record = self._cases.get(other)
            if other == case_id or record is None or record.category is None:
                continue  # the case itself, or no longer labelled: not evidence
            found.append(Neighbor(other, sim, record.category, record.actions or ()))
            if len(found) == self.k:
                break
        return tuple(found)

    def _precedent(self, text: str, case_id: str) -> Precedent | None:
        if not self._precedents:
            return None
        other = self._precedents.get(signature(text))
        record = self._cases.get(other) if other is not None and other != case_id else None
        if other is None or record is None or not record.corrected:
            return None
        return Precedent(other, record.category, record.actions)


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


def _index(names: tuple[str, ...], name: str | None) -> int:
    return names.index(name) if name is not None and name in names else -1


def _installation(model: FittedModel, snapshot: list[Labelled]) -> _Installed:
    """The model with its rows' case ids and current labels. Built on the helper thread
    for background refits, in small steps that yield the GIL to the loop's thread."""
    rows = model.history_rows.tolist()
    case_ids: list[str] = []
    row_of: dict[str, int] = {}
    for start in range(0, len(rows), _CHUNK * 20):
        for row, index in enumerate(rows[start : start + _CHUNK * 20], start):
            case_id = snapshot[index].view.case_id
            case_ids.append(case_id)
            row_of[case_id] = row
        time.sleep(0)
    return _Installed(
        model, tuple(case_ids), row_of, model.row_category.copy(), model.row_action.copy()
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
