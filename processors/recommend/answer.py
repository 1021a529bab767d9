"""What any recommender answers, before it becomes a RecommendationProduced event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from schemas.events import ActionSpec


class Neighbor(NamedTuple):
    """A resolved past case similar to the one at hand, with what humans did about it.

    A named tuple rather than a frozen dataclass: a batch builds ten per case, and a
    tuple is built several times faster (immutable all the same).
    """

    case_id: str
    similarity: float
    category: str
    actions: tuple[ActionSpec, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    """A recommendation's content; `category` None means no prediction.

    The last three are the baseline model's own evidence (empty for other answers): its
    most probable categories and the actions it weighed, with their probabilities, and
    the version of the model that said so.
    """

    summary: str
    category: str | None
    confidence: float
    similar: tuple[Neighbor, ...]
    action: ActionSpec | None
    rationale: str
    category_probabilities: tuple[tuple[str, float], ...] = ()
    action_probabilities: tuple[tuple[str, float], ...] = ()  # "" stands for no action
    model_version: str | None = None
