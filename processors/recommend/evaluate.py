"""Offline evaluation of the baseline recommender against labelled cases.

History events teach the index; every case of the evaluated set that ends in a
CaseResolved is recommended for (on its last view before resolution, routed and
restricted exactly as in production, never calling an LLM) and scored against what
humans did. The evaluated cases are held out: they never teach the index.

- category accuracy: predicted category == CaseResolved.category (no prediction: miss);
- next-action hit rate: recommended action among actions_taken, over the cases where
  humans took at least one action;
- the majority-class baseline: always the most frequent category / action of history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from policy.loader import LoadedPolicy, default_policy_path, load_policy_file
from processors.recommend.baseline import BaselineIndex
from processors.recommend.case_view import CaseView, apply_update, open_view
from processors.recommend.service import plan, route
from processors.recommend.visibility import Visibility
from schemas.events import CaseOpened, CaseResolved, CaseUpdated, Event


@dataclass(frozen=True, slots=True)
class Score:
    """Hits over cases for the recommender and for the majority-class baseline."""

    cases: int
    correct: int
    majority_correct: int
    action_cases: int  # cases where humans took at least one action
    hits: int
    majority_hits: int

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
    def majority_hit_rate(self) -> float:
        return self.majority_hits / self.action_cases if self.action_cases else 0.0


@dataclass(frozen=True, slots=True)
class EvalReport:
    history_cases: int  # resolved cases the index learned from
    unlabelled: int  # evaluated cases opened but never resolved: not scored
    majority_category: str | None
    majority_action: str | None
    overall: Score
    per_category: dict[str, Score]  # by true category, sorted by name


def evaluate(
    history_events: Iterable[Event],
    case_events: Iterable[Event],
    *,
    policy: LoadedPolicy | None = None,
    max_cases: int = 20_000,
) -> EvalReport:
    """Replay history, recommend for each labelled case, score against the majority class."""
    loaded = policy or load_policy_file(default_policy_path())
    index = BaselineIndex(
        Visibility.from_policy(loaded.policy.model_visibility), max_cases=max_cases
    )
    index.replay(history_events)
    majority_category = _most_common(index.categories)
    majority_action = _most_common(index.actions)
    views: dict[str, CaseView] = {}
    rows: dict[str, list[tuple[bool, bool, bool | None, bool | None]]] = {}
    for event in case_events:
        if isinstance(event, CaseOpened):
            views[event.case_id] = open_view(event)
        elif isinstance(event, CaseUpdated) and event.case_id in views:
            views[event.case_id] = apply_update(views[event.case_id], event)
        elif isinstance(event, CaseResolved) and event.case_id in views:
            view = views.pop(event.case_id)
            answer = plan(view, route(view, loaded, index), loaded, index).baseline
            taken = {a.name for a in event.actions_taken}
            rows.setdefault(event.category, []).append(
                (
                    answer.category == event.category,
                    majority_category == event.category,
                    (answer.action is not None and answer.action.name in taken) if taken else None,
                    (majority_action in taken) if taken else None,
                )
            )
    per_category = {cat: _score(r) for cat, r in sorted(rows.items())}
    return EvalReport(
        index.resolved_count,
        len(views),
        majority_category,
        majority_action,
        _score([row for r in rows.values() for row in r]),
        per_category,
    )


def _most_common(counts: Counter[str]) -> str | None:
    # Ties go to the alphabetically first, so the report is reproducible.
    return min(counts, key=lambda k: (-counts[k], k)) if counts else None


def _score(rows: list[tuple[bool, bool, bool | None, bool | None]]) -> Score:
    with_actions = [r for r in rows if r[2] is not None]
    return Score(
        cases=len(rows),
        correct=sum(r[0] for r in rows),
        majority_correct=sum(r[1] for r in rows),
        action_cases=len(with_actions),
        hits=sum(bool(r[2]) for r in with_actions),
        majority_hits=sum(bool(r[3]) for r in with_actions),
    )


def render(report: EvalReport) -> str:
    """The report as a plain-text table, one row per true category and one overall."""
    head = (
        f"history: {report.history_cases} resolved cases; majority category "
        f"{report.majority_category}, majority action {report.majority_action}; "
        f"unlabelled (not scored): {report.unlabelled}"
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
    return "\n".join(lines)
