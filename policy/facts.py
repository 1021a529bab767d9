"""The few case fields the guard needs, remembered from CaseOpened."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import CaseOpened


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
        return cls(
            case_id=event.case_id,
            channel=event.channel,
            queue=event.queue,
            team=event.team,
            issue_class=event.issue_class,
            priority=event.priority,
            source=event.source,
            subject=event.subject,
        )

    def match_fields(self) -> dict[str, str | None]:
        """The case fields a workflow's `match` may name (`category` comes from the model)."""
        return {
            "channel": self.channel,
            "queue": self.queue,
            "team": self.team,
            "issue_class": self.issue_class,
            "priority": self.priority,
            "source": self.source,
        }
