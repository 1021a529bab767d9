"""The baseline recommender's memory: resolved cases, indexed over what models may see.

It learns from the `cases` topic alone: CaseOpened/CaseUpdated give a case's text,
CaseResolved labels it with the final category and the actions humans took. Rebuilt at
start-up by replaying the topic, then fed live. Memory is bounded twice: at most
`max_cases` resolved cases (the oldest evicted) and `max_open` unresolved ones.

Only the allowlisted, redacted projection of a case is ever stored (`restrict`), so the
baseline obeys the data-field guardrail exactly as the LLM does.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from processors.recommend.answer import Neighbor
from processors.recommend.case_view import CaseView, apply_update, open_view
from processors.recommend.textindex import TfIdfIndex, tokenize, weigh
from processors.recommend.visibility import ModelInput, Visibility, model_input, restrict
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    Event,
)

# Paths whose text is tokenized into words; any other path is one categorical feature
# ("queue=billing"), because its value is a label, not prose.
FREE_TEXT = frozenset({"subject", "description"})
# Below this cosine a past case shares too little with this one to have a say.
MIN_SIMILARITY = 0.05


def features(inp: ModelInput) -> dict[str, float]:
    """Term weights of a model input: words of free text, `path=value` for the rest."""
    counts: Counter[str] = Counter()
    for path, value in inp.fields.items():
        if path in FREE_TEXT and isinstance(value, str):
            counts.update(tokenize(value))
        else:
            counts[f"{path}={value}".lower()] += 1
    return weigh(counts)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A learned case: its restricted view and the humans' resolution."""

    view: CaseView
    category: str
    actions: tuple[ActionSpec, ...]


class BaselineIndex:
    """Resolved-case history for the baseline; feed it every `cases` event in order."""

    def __init__(
        self,
        visibility: Visibility,
        *,
        max_cases: int = 20_000,
        max_open: int = 50_000,
        k: int = 10,
        max_candidates: int = 64,
        walk_budget: int = 1_000,
        max_query_terms: int = 24,
    ) -> None:
        """`max_cases`/`max_open` bound memory; `k` neighbours vote; the last three trade
        accuracy for speed (see `TfIdfIndex`)."""
        self.visibility = visibility
        self.k = k
        self.max_open = max_open
        self._open: OrderedDict[str, CaseView] = OrderedDict()
        self._index: TfIdfIndex[Resolved] = TfIdfIndex(
            max_cases, max_candidates, walk_budget, max_query_terms
        )
        self._categories: Counter[str] = Counter()
        self._actions: Counter[str] = Counter()
        # The recommender asks twice for the same case's neighbours (`route` picks the
        # workflow, then `plan` answers within it); the search is most of a
        # recommendation's cost, so the last answer is kept until the index changes.
        self._changes = 0
        self._last: tuple[tuple[str, str | None, int], tuple[Neighbor, ...]] | None = None

    @property
    def resolved_count(self) -> int:
        """How many resolved cases are indexed now."""
        return len(self._index)

    @property
    def categories(self) -> Counter[str]:
        """Final categories of the indexed cases, with their counts."""
        return +self._categories

    @property
    def actions(self) -> Counter[str]:
        """Action names taken in the indexed cases (once per case), with their counts."""
        return +self._actions

    def observe(self, event: Event) -> None:
        """Learn from one `cases` event; events of other kinds are ignored."""
        if isinstance(event, CaseOpened):
            self._remember(restrict(open_view(event), self.visibility))
        elif isinstance(event, CaseUpdated):
            view = self._open.get(event.case_id)
            if view is not None:
                updated = apply_update(view, event)
                self._open[event.case_id] = restrict(updated, self.visibility)
        elif isinstance(event, CaseResolved):
            self._learn(event)
        elif isinstance(event, CaseReopened):
            # The old resolution no longer stands: unlearn it, and wait for the next one.
            self._changes += 1
            resolved = self._index.remove(event.case_id)
            if resolved is not None:
                self._forget(resolved)
                self._remember(resolved.view)

    def replay(self, events: Iterable[Event]) -> int:
        """Observe every event in order (start-up rebuild); how many were read."""
        count = 0
        for event in events:
            self.observe(event)
            count += 1
        return count

    def neighbors(
        self, inp: ModelInput, *, exclude_case: str | None = None
    ) -> tuple[Neighbor, ...]:
        """The `k` most similar resolved cases (cosine >= MIN_SIMILARITY), best first."""
        query = (inp.sha256, exclude_case, self._changes)
        if self._last is not None and self._last[0] == query:
            return self._last[1]
        hits = self._index.search(features(inp), self.k, exclude=exclude_case)
        found = tuple(
            Neighbor(str(key), round(sim, 4), resolved.category, resolved.actions)
            for key, sim, resolved in hits
            if sim >= MIN_SIMILARITY
        )
        self._last = (query, found)
        return found

    def terms(self) -> frozenset[str]:
        """Every term the index holds: what an audit checks for leaked personal data."""
        return self._index.terms()

    def idf(self, term: str) -> float:
        """How informative `term` is in the current history."""
        return self._index.idf(term)

    def _remember(self, view: CaseView) -> None:
        self._open[view.case_id] = view
        self._open.move_to_end(view.case_id)
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)

    def _learn(self, event: CaseResolved) -> None:
        self._changes += 1  # whatever follows, the resolved set (and idf) may move
        view = self._open.pop(event.case_id, None)
        if view is None:
            # Resolved twice without a reopen: the latest resolution wins. Otherwise the
            # case was opened before the history we kept, and there is no text to learn.
            previous = self._index.remove(event.case_id)
            if previous is None:
                return
            self._forget(previous)
            view = previous.view
        resolved = Resolved(view, event.category, event.actions_taken)
        weights = features(model_input(view, self.visibility))
        for displaced in self._index.add(event.case_id, weights, resolved):
            self._forget(displaced)
        self._categories[resolved.category] += 1
        self._actions.update({a.name for a in resolved.actions})

    def _forget(self, resolved: Resolved) -> None:
        self._categories[resolved.category] -= 1
        self._actions.subtract({a.name for a in resolved.actions})
