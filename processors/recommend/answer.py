"""What any recommender answers, before it becomes a RecommendationProduced event."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import ActionSpec


@dataclass(frozen=True, slots=True)
class Neighbor:
    """A resolved past case similar to the one at hand, with what humans did about it."""

    case_id: str
    similarity: float
    category: str
    actions: tuple[ActionSpec, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    """A recommendation's content; `category` None means no prediction."""

    summary: str
    category: str | None
    confidence: float
    similar: tuple[Neighbor, ...]
    action: ActionSpec | None
    rationale: str
