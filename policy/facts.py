"""The few case fields the guard needs: the routing a recommendation carries."""

from __future__ import annotations

from dataclasses import dataclass

from policy.routing import routing_fields
from schemas.events import CaseOpened, RecommendationProduced, Routing


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFacts:
    """What the guard knows of a case: the fields workflows match on (and its subject,
    for messages). Free text and personal data stay out: guardrails never read them."""

    case_id: str
    channel: str
    queue: str
    team: str
    issue_class: str | None = None
    priority: str
    source: str
    subject: str = ""

    @classmethod
    def from_case_opened(cls, event: CaseOpened) -> CaseFacts:
        return cls(case_id=event.case_id, subject=event.subject, **routing_fields(event))  # type: ignore[arg-type]

    @classmethod
    def from_routing(cls, case_id: str, routing: Routing) -> CaseFacts:
        return cls(case_id=case_id, **routing_fields(routing))  # type: ignore[arg-type]

    @classmethod
    def of_recommendation(cls, rec: RecommendationProduced) -> CaseFacts | None:
        """The routing the recommendation was made under; None if it carries none."""
        return None if rec.routing is None else cls.from_routing(rec.case_id, rec.routing)

    def match_fields(self) -> dict[str, str | None]:
        """The case fields a workflow's `match` may name (policy.routing.MATCH_FIELDS)."""
        return routing_fields(self)
