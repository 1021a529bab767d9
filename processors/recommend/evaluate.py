"""Offline evaluation of the baseline recommender against labelled cases.

History events teach a `Memory`, which is then fitted (`refit`) on all of them, as the
recommend processor's first fit is after that history was imported. The evaluated
cases' events then teach the memory too, as they teach the processor's; every
evaluated case that ends in a CaseResolved is planned for, in time order and in
batches, on the view its latest recommendation would have been made for (its CaseOpened,
or the last CaseUpdated that made one due, `case_view.recommendation_due`), by the very
function the processor calls (`plan_batch`), so routing, the allowlist and redaction,
abstention, vetting, binding and point-in-time learning are those of production: a case
sees only labels (of history or of earlier evaluated cases) given before its own time,
never its own resolution. No LLM is called. On the same events the answers are the
pipeline's, case by case, while the pipeline keeps the model it first fitted (it refits
after `Memory.refit_every` labels or `refit_after_s`; the offline run never does).

Scores, against what humans did:
- category accuracy (no prediction: a miss), beside the majority class of history;
- macro-F1: the mean over categories (true or predicted) of per-category F1;
- accuracy at the threshold and coverage: accuracy over the cases whose confidence
  reaches their workflow's `min_confidence`, and the share of cases that do;
- top-3 accuracy: the true category among the three most probable;
- next-action hit: the case's recommended action is among its actions_taken (the one
  definition of a hit, shared with shadow_alignment). Hit rate: hits over the cases
  where humans took at least one action (shadow_alignment.action_hit_rate); match rate:
  hits over the cases where an action was recommended (action_match_rate). Beside them
  the majority action of history among the catalog's actions (the recommender can name
  no other), so a catalog without history's actions is not flattered by its baseline;
- similar-case precision@5: the share of the first five similar cases (fewer when fewer
  are shown) with the case's own true category;
- expected calibration error: over ten equal-width confidence bins, the case-weighted
  mean of |accuracy - mean confidence|.

Labelled CSV files (columns `text` and `category`; optional `subject`, `action`,
`queue`, `channel`, `priority`) are read as one CaseOpened and one CaseResolved per row
(`read_labelled_csv`), and one file can be split deterministically (`split_cases`).
Their rows have no time of their own: evaluated rows are placed after the whole history
(`after_history`), so every history row is in their past.
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policy.loader import LoadedPolicy, default_policy_path, load_policy_file
from policy.workflow import DEFAULT_MIN_CONFIDENCE
from processors.recommend.case_view import (
    CaseView,
    apply_update,
    open_view,
    recommendation_due,
)
from processors.recommend.memory import Memory
from processors.recommend.redacted_view import Visibility
from processors.recommend.service import Plan, plan_batch
from schemas.events import ActionSpec, CaseOpened, CaseResolved, CaseUpdated, Event

BATCH = 200
CSV_NAMESPACE = uuid.UUID("6c1d2a57-0f3e-4b8e-9a61-3d2f5b7c8e90")
CSV_START = datetime(2026, 1, 1, tzinfo=UTC)
ECE_BINS = 10


@dataclass(frozen=True, slots=True)
class Row:
    """One evaluated case: what was recommended beside what humans did."""

    truth: str
    predicted: str | None
    confidence: float
    threshold: float
    top3: tuple[str, ...]
    taken: frozenset[str]
    action: str | None
    similar: tuple[str, ...]  # categories of the similar cases, most similar first
    case_id: str = ""
    similar_cases: tuple[str, ...] = ()  # their case ids, in the same order


@dataclass(frozen=True, slots=True)
class Score:
    """Hits over cases for the recommender and for the majority-class baseline."""

    cases: int
    correct: int
    majority_correct: int
    action_cases: int  # cases where humans took at least one action
    hits: int
    majority_hits: int
    recommended: int = 0  # cases for which an action was recommended (not abstained)

    @property
    def accuracy(self) -> float:
        return self.correct / self.cases if self.cases else 0.0

    @property
    def majority_accuracy(self) -> float:
        return self.majority_correct / self.cases if self.cases else 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.action_cases if self.action_cases else 0.0

    @property
    def match_rate(self) -> float:
        return self.hits / self.recommended if self.recommended else 0.0

    @property
    def majority_hit_rate(self) -> float:
        return self.majority_hits / self.action_cases if self.action_cases else 0.0


@dataclass(frozen=True, slots=True)
class Quality:
    """The figures beyond accuracy and hit rate, over all evaluated cases."""

    macro_f1: float
    coverage: float  # share of cases at or above their threshold
    accuracy_at_threshold: float  # accuracy over those cases
    top3_accuracy: float
    precision_at_5: float  # over the cases with at least one similar case
    ece: float


@dataclass(frozen=True, slots=True)
class EvalReport:
    history_cases: int  # labelled cases the memory learned from
    unlabelled: int  # evaluated cases opened but never resolved: not scored
    majority_category: str | None
    majority_action: str | None
    model_version: str | None
    overall: Score
    quality: Quality
    per_category: dict[str, Score]  # by true category, sorted by name
    # Distinct action names of history, and those the policy's catalog lacks (most
    # frequent first): hits can only come from names the catalog holds.
    history_actions: int = 0
    uncataloged_actions: tuple[str, ...] = ()
    rows: tuple[Row, ...] = ()  # each evaluated case, in the order it was planned


def evaluate(
    history_events: Iterable[Event],
    case_events: Iterable[Event],
    *,
    policy: LoadedPolicy | None = None,
    max_cases: int = 50_000,
) -> EvalReport:
    """Learn history, fit, plan every labelled case in batches, score (see module doc)."""
    loaded = policy or load_policy_file(default_policy_path())
    memory = Memory(Visibility.from_policy(loaded.policy.model_visibility), max_cases=max_cases)
    memory.replay(history_events)
    memory.refit(in_process=True)  # one process: nothing to keep lean
    majority_category = _most_common(memory.categories)
    catalog = loaded.policy.catalog
    history_actions = Counter({a: n for a, n in memory.actions.items() if a})
    majority_action = _most_common(
        Counter({a: n for a, n in history_actions.items() if a in catalog})
    )
    history_cases = memory.labelled_count
    events = list(case_events)
    due = recommended_views(events)
    unlabelled = len({e.case_id for e in events if isinstance(e, CaseOpened)}) - len(due)
    memory.replay(events)  # cut off per case by time, as in the pipeline
    due.sort(key=lambda d: (d[0].as_of_ms or 0, d[0].case_id))
    rows: list[Row] = []
    for start in range(0, len(due), BATCH):
        chunk = due[start : start + BATCH]
        plans = plan_batch([view for view, _ in chunk], loaded, memory)
        rows += [_row(p, resolved) for p, (_, resolved) in zip(plans, chunk, strict=True)]
    memory.close()
    by_category: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_category[row.truth].append(row)
    return EvalReport(
        history_cases,
        unlabelled,
        majority_category,
        majority_action,
        memory.model_version,
        _score(rows, majority_category, majority_action),
        _quality(rows),
        {c: _score(r, majority_category, majority_action) for c, r in sorted(by_category.items())},
        history_actions=len(history_actions),
        uncataloged_actions=tuple(
            a
            for a, _ in sorted(history_actions.items(), key=lambda kv: (-kv[1], kv[0]))
            if a not in catalog
        ),
        rows=tuple(rows),
    )


def recommended_views(events: Sequence[Event]) -> list[tuple[CaseView, CaseResolved]]:
    """Per case that ends resolved: the view its latest recommendation was made for (the
    processor's rule), with its resolution."""
    views: dict[str, CaseView] = {}
    latest: dict[str, CaseView] = {}
    due: list[tuple[CaseView, CaseResolved]] = []
    for event in events:
        if isinstance(event, CaseOpened) and event.case_id not in views:
            views[event.case_id] = latest[event.case_id] = open_view(event)
        elif isinstance(event, CaseUpdated) and event.case_id in views:
            before = views[event.case_id]
            views[event.case_id] = after = apply_update(before, event)
            if recommendation_due(before, after):
                latest[event.case_id] = after
        elif isinstance(event, CaseResolved) and event.case_id in latest:
            due.append((latest.pop(event.case_id), event))
    return due


def after_history(history: Sequence[Event], cases: Sequence[Event]) -> list[Event]:
    """`cases` moved in time, spacing kept, to start after the last event of `history`
    (for rows without times of their own, such as a labelled CSV's)."""
    if not history or not cases:
        return list(cases)
    last = max(e.occurred_at for e in history)
    first = min(e.occurred_at for e in cases)
    if first > last:
        return list(cases)
    shift = last - first + timedelta(seconds=1)
    return [replace(e, occurred_at=e.occurred_at + shift) for e in cases]


def _row(p: Plan, resolved: CaseResolved) -> Row:
    answer = p.baseline
    recommender = p.workflow.recommender if p.workflow is not None else None
    return Row(
        truth=resolved.category,
        predicted=answer.category,
        confidence=answer.confidence,
        threshold=recommender.min_confidence if recommender else DEFAULT_MIN_CONFIDENCE,
        top3=tuple(c for c, _ in answer.category_probabilities[:3]),
        taken=frozenset(a.name for a in resolved.actions_taken),
        action=answer.action.name if answer.action is not None else None,
        similar=tuple(n.category for n in answer.similar),
        case_id=p.case.case_id,
        similar_cases=tuple(n.case_id for n in answer.similar),
    )


def _most_common(counts: Counter[str]) -> str | None:
    # Ties go to the alphabetically first, so the report is reproducible.
    return min(counts, key=lambda k: (-counts[k], k)) if counts else None


def _score(rows: Sequence[Row], majority: str | None, majority_action: str | None) -> Score:
    with_actions = [r for r in rows if r.taken]
    return Score(
        cases=len(rows),
        correct=sum(r.predicted == r.truth for r in rows),
        majority_correct=sum(majority == r.truth for r in rows),
        action_cases=len(with_actions),
        hits=sum(r.action in r.taken for r in with_actions),
        majority_hits=sum(majority_action in r.taken for r in with_actions),
        recommended=sum(r.action is not None for r in rows),
    )


def _quality(rows: Sequence[Row]) -> Quality:
    n = len(rows)
    if n == 0:
        return Quality(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    answered = [r for r in rows if r.predicted is not None and r.confidence >= r.threshold]
    shown = [r for r in rows if r.similar]
    precision = sum(sum(c == r.truth for c in r.similar[:5]) / len(r.similar[:5]) for r in shown)
    return Quality(
        macro_f1=macro_f1(rows),
        coverage=len(answered) / n,
        accuracy_at_threshold=(
            sum(r.predicted == r.truth for r in answered) / len(answered) if answered else 0.0
        ),
        top3_accuracy=sum(r.truth in r.top3 for r in rows) / n,
        precision_at_5=precision / len(shown) if shown else 0.0,
        ece=expected_calibration_error(
            [r.confidence for r in rows], [r.predicted == r.truth for r in rows]
        ),
    )


def macro_f1(rows: Sequence[Row]) -> float:
    """Mean F1 over every category that is true or predicted for some case."""
    labels = {r.truth for r in rows} | {r.predicted for r in rows if r.predicted is not None}
    scores = []
    for label in sorted(labels):
        tp = sum(r.truth == label and r.predicted == label for r in rows)
        fp = sum(r.truth != label and r.predicted == label for r in rows)
        fn = sum(r.truth == label and r.predicted != label for r in rows)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """ECE over ECE_BINS equal-width bins of confidence (1.0 falls in the last bin)."""
    bins: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for c, ok in zip(confidence, correct, strict=True):
        bins[min(int(c * ECE_BINS), ECE_BINS - 1)].append((c, ok))
    total = len(confidence)
    return sum(
        abs(sum(ok for _, ok in b) / len(b) - sum(c for c, _ in b) / len(b)) * len(b) / total
        for b in bins.values()
    )


def read_labelled_csv(path: Path) -> list[Event]:
    """Rows of a labelled CSV as CaseOpened + CaseResolved pairs in the contract form.

    Required columns `text` (the description) and `category`; optional `subject`,
    `action` (one action name humans took; empty for none), `queue`, `channel` and
    `priority`. Case ids are `<file stem>-<row number>`, event ids derived from them, and
    events one second apart from 2026-01-01, so a file always reads the same.
    """
    events: list[Event] = []
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        missing = {"text", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
        for number, row in enumerate(reader, start=1):
            case_id = f"{path.stem}-{number:06d}"
            at = CSV_START + timedelta(seconds=2 * number)
            action = (row.get("action") or "").strip()
            events.append(
                CaseOpened(
                    event_id=str(uuid.uuid5(CSV_NAMESPACE, f"{case_id}/opened")),
                    case_id=case_id,
                    occurred_at=at,
                    source="csv",
                    channel=row.get("channel") or "web",
                    queue=row.get("queue") or "csv",
                    team="csv",
                    issue_class=None,
                    subject=row.get("subject") or "",
                    description=row["text"],
                    priority=row.get("priority") or "normal",
                    customer={},
                    attributes={},
                )
            )
            events.append(
                CaseResolved(
                    event_id=str(uuid.uuid5(CSV_NAMESPACE, f"{case_id}/resolved")),
                    case_id=case_id,
                    occurred_at=at + timedelta(seconds=1),
                    resolved_by="csv",
                    resolution_code="labelled",
                    category=row["category"],
                    actions_taken=(ActionSpec(name=action, params={}),) if action else (),
                )
            )
    return events


def split_cases(events: Sequence[Event], fraction: float) -> tuple[list[Event], list[Event]]:
    """(history, evaluated): a case's events go to the evaluated side when the sha256 of
    its id, read as a number in [0, 1), is below `fraction`; order kept on both sides."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("the split fraction must be between 0 and 1")
    held: dict[str, bool] = {}
    history: list[Event] = []
    evaluated: list[Event] = []
    for event in events:
        side = held.get(event.case_id)
        if side is None:
            digest = hashlib.sha256(event.case_id.encode()).digest()
            side = held[event.case_id] = int.from_bytes(digest[:8], "big") / 2**64 < fraction
        (evaluated if side else history).append(event)
    return history, evaluated


def render(report: EvalReport) -> str:
    """The report as plain text: a header, one row per true category and one overall,
    then the quality figures."""
    head = (
        f"history: {report.history_cases} labelled cases; model {report.model_version}; "
        f"majority category {report.majority_category}, majority action "
        f"{report.majority_action}; unlabelled (not scored): {report.unlabelled}"
    )
    lines = [
        head,
        f"{'category':<24}{'cases':>6}{'accuracy':>10}{'majority':>10}"
        f"{'w/ action':>10}{'hit rate':>10}{'majority':>10}",
    ]
    rows = [*report.per_category.items(), ("ALL", report.overall)]
    for name, s in rows:
        lines.append(
            f"{name:<24}{s.cases:>6}{s.accuracy:>10.3f}{s.majority_accuracy:>10.3f}"
            f"{s.action_cases:>10}{s.hit_rate:>10.3f}{s.majority_hit_rate:>10.3f}"
        )
    q = report.quality
    lines.append(
        f"macro-F1 {q.macro_f1:.3f}; at the threshold: accuracy {q.accuracy_at_threshold:.3f}, "
        f"coverage {q.coverage:.3f}; top-3 accuracy {q.top3_accuracy:.3f}; similar-case "
        f"precision@5 {q.precision_at_5:.3f}; expected calibration error {q.ece:.3f}"
    )
    return "\n".join(lines)
