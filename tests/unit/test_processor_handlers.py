"""Given a processor's handler, a batch of records and its state, when the batch is handled,
then it asks for exactly the events, forwards, dead letters and state the rules say — no
broker involved (the loop that carries them out is tested on the real one)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from infra.kafka import partition_for
from infra.settings import Settings
from policy.loader import LoadedPolicy, load_policy_text
from policy.sealing import DataKey, reveal
from processors.approve import ITEMS, WAITING, Approve
from processors.guard import AUTO_RUNS, Guard
from processors.handler import Handler, Inbound, Outbox, Step
from processors.intake import CASES, Intake
from processors.store import MemoryStore, Overlay
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    ApprovalCompleted,
    ApprovalExpired,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    DeadLettered,
    Event,
    GuardrailDecided,
    ReviewRecorded,
)
from tests.integration.pipeline import case_opened, policy_text, recommendation, review

CODEC = Codec.load()
SETTINGS = Settings(topic_prefix="t.", partitions=6, state_retention_s=3600, review_wait_s=60)
POLICY = load_policy_text(policy_text("http://127.0.0.1:9"))
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RESET = ActionSpec(name="reset_password", params={"method": "email_link"})
PLAN = ActionSpec(name="change_plan", params={"plan": "pro"})


def inbound(
    event: Event, stream: str, *, partition: int | None = None, at: datetime = NOW
) -> Inbound:
    key = event.case_id.encode()
    value, headers = CODEC.encode(event)
    return Inbound(
        f"t.{stream}",
        partition_for(key, 6) if partition is None else partition,
        0,
        at.timestamp(),
        key,
        value,
        headers,
        stream,
        event,
    )


def step(
    handler: Handler,
    batch: list[Inbound],
    store: MemoryStore,
    policy: LoadedPolicy | None = POLICY,
    now: datetime = NOW,
) -> Outbox:
    """Handle one batch as the loop does, then commit its state into `store`."""
    out = Outbox(CODEC, "t.", f"t.{handler.component}")
    overlay = Overlay(store)
    versions = {policy.version: policy} if policy is not None else {}
    handler.handle(batch, Step(overlay, out, policy, now, 6, versions))
    store.apply(overlay.changes())
    return out


def events(out: Outbox) -> list[tuple[str, Event]]:
    return [(r.topic, CODEC.decode(r.value, r.headers)) for r in out.records]


# --- intake ------------------------------------------------------------------------------


class CountingKeys:
    """Data keys by customer ref, counting the lookups intake makes."""

    def __init__(self) -> None:
        self.keys: dict[str, DataKey] = {}
        self.lookups: list[list[str]] = []

    def keys_for(self, refs: list[str]) -> dict[str, DataKey]:
        self.lookups.append(list(refs))
        for n, ref in enumerate(refs, len(self.keys)):
            self.keys.setdefault(ref, DataKey(n.to_bytes(16, "big"), bytes([n % 256]) * 32))
        return {ref: self.keys[ref] for ref in refs}

    def close(self) -> None:
        pass


def new_intake(keys: CountingKeys | None = None) -> Intake:
    return Intake(SETTINGS, keys or CountingKeys(), b"r" * 32)


def test_intake_forwards_an_accepted_case_byte_for_byte_and_remembers_it() -> None:
    store, opened = MemoryStore(), inbound(case_opened("c1", "billing"), "upstream")

    out = step(new_intake(), [opened], store)

    [sent] = out.records
    assert (sent.topic, sent.key, sent.value) == ("t.cases", b"c1", opened.value)
    entry = store.read(CASES, opened.partition, "c1")
    assert entry is not None and entry.value["status"] == "open" and entry.expires_ms is None


def test_intake_seals_personal_fields_with_one_key_lookup_per_batch() -> None:
    keys, store = CountingKeys(), MemoryStore()
    opened = replace(
        case_opened("c1", "billing"),
        description="write to ana@example.com",
        customer={"id": "cu-1", "name": "Ana Lima", "tier": "gold"},
    )
    other = replace(case_opened("c2", "billing"), customer={"id": "cu-2", "name": "Bo Ek"})
    note = CaseUpdated(
        event_id="u1",
        case_id="c1",
        occurred_at=NOW,
        actor="crm",
        changes={},
        note="ana@example.com",
    )
    intake = new_intake(keys)

    out = step(intake, [inbound(opened, "upstream"), inbound(other, "upstream")], store)
    later = step(intake, [inbound(note, "upstream")], store)

    [(_, sealed), (_, sealed_other)] = events(out)
    [(_, sealed_note)] = events(later)
    assert isinstance(sealed, type(opened)) and isinstance(sealed_note, CaseUpdated)
    assert len(keys.lookups) == 2 and len(keys.lookups[0]) == 2  # two customers, one lookup
    text = repr((sealed, sealed_other, sealed_note))
    for secret in ("ana@example.com", "Ana Lima", "cu-1", "Bo Ek", "cu-2"):
        assert secret not in text
    assert sealed.customer["tier"] == "gold"  # configured as not personal
    opened_with = {k.key_id: k for k in keys.keys.values()}
    assert reveal(sealed.customer, opened_with) == opened.customer
    assert reveal(sealed.description, opened_with) == opened.description
    assert reveal(sealed_note.note, opened_with) == "ana@example.com"
    entry = store.read(CASES, partition_for(b"c1", 6), "c1")
    assert entry is not None and entry.value["customer_ref"] in keys.keys


def test_intake_keeps_a_cases_key_and_makes_none_for_what_it_refuses() -> None:
    keys, store = CountingKeys(), MemoryStore()
    intake = new_intake(keys)
    opened = replace(case_opened("c1", "billing"), customer={"id": "cu-1"})
    step(intake, [inbound(opened, "upstream")], store)
    impostor = replace(opened, event_id="o2", customer={"id": "cu-2"})  # refused: c1 is open
    note = CaseUpdated(
        event_id="u1", case_id="c1", occurred_at=NOW, actor="crm", changes={}, note="a@b.io"
    )
    unknown = replace(note, event_id="u2", case_id="nobody")

    out = step(intake, [inbound(e, "upstream") for e in (impostor, note, unknown)], store)

    assert len(keys.keys) == 1  # cu-1's only: nothing for the impostor or the unknown case
    [sealed] = [e for _, e in events(out) if isinstance(e, CaseUpdated)]
    assert reveal(sealed.note, {k.key_id: k for k in keys.keys.values()}) == "a@b.io"


def test_intake_drops_a_redelivery_and_refuses_what_breaks_the_story() -> None:
    store, intake = MemoryStore(), new_intake()
    opened = case_opened("c1", "billing")
    step(intake, [inbound(opened, "upstream")], store)
    unknown = CaseUpdated(
        event_id="u1", case_id="nobody", occurred_at=NOW, actor="crm", changes={"x": 1}
    )

    out = step(
        intake,
        [
            inbound(opened, "upstream"),  # upstream sent it again: dropped quietly
            inbound(replace(opened, event_id="other"), "upstream"),
            inbound(unknown, "upstream"),
        ],
        store,
    )

    reasons = [e.reason for _, e in events(out) if isinstance(e, DeadLettered)]
    assert len(out.records) == 2 and len(reasons) == 2
    assert "was already opened" in reasons[0] and "unknown case nobody" in reasons[1]


def test_intake_refuses_a_case_on_another_partition_than_its_key_hashes_to() -> None:
    opened = case_opened("c1", "billing")
    wrong = (partition_for(b"c1", 6) + 1) % 6

    out = step(new_intake(), [inbound(opened, "upstream", partition=wrong)], MemoryStore())

    [(topic, letter)] = events(out)
    assert topic == "t.deadletter" and isinstance(letter, DeadLettered)
    assert "murmur2" in letter.reason


def test_intake_keeps_a_resolved_case_for_the_retention_period_only() -> None:
    store, intake = MemoryStore(), new_intake()
    step(intake, [inbound(case_opened("c1", "billing"), "upstream")], store)
    resolved = CaseResolved(
        event_id="r1",
        case_id="c1",
        occurred_at=NOW,
        resolved_by="sam",
        resolution_code="done",
        category="billing",
        actions_taken=(),
    )

    step(intake, [inbound(resolved, "upstream")], store)

    entry = store.read(CASES, partition_for(b"c1", 6), "c1")
    assert entry is not None and entry.value["status"] == "resolved"
    assert entry.expires_ms == round(NOW.timestamp() * 1000) + 3_600_000


# --- guard -------------------------------------------------------------------------------


def test_guard_routes_on_the_recommendations_routing_and_counts_automatic_runs() -> None:
    store = MemoryStore()
    rec = inbound(recommendation("c1", RESET, queue="identity"), "recommendations")

    out = step(Guard(), [rec], store)

    [(topic, decision)] = events(out)
    assert topic == "t.decisions" and isinstance(decision, GuardrailDecided)
    assert (decision.workflow, decision.outcome) == ("bounded_wf", "auto_authorized")
    entry = store.read(AUTO_RUNS, rec.partition, f"bounded_wf|{rec.partition}")
    assert entry is not None and len(entry.value) == 1
    assert entry.expires_ms == round(NOW.timestamp() * 1000) + 3_600_000  # the window


def test_guard_dead_letters_a_recommendation_without_routing() -> None:
    out = step(Guard(), [inbound(recommendation("c1", RESET), "recommendations")], MemoryStore())

    [(topic, letter)] = events(out)
    assert topic == "t.deadletter" and isinstance(letter, DeadLettered)
    assert "no routing fields" in letter.reason


def test_a_routing_change_changes_the_workflow() -> None:
    guard = Guard()
    first = recommendation("c1", PLAN, queue="billing")
    later = replace(recommendation("c1", PLAN, n=2, queue="shadowq"), causation_id="update-of-c1")

    out = step(
        guard, [inbound(first, "recommendations"), inbound(later, "recommendations")], MemoryStore()
    )

    outcomes = [(e.workflow, e.outcome) for _, e in events(out) if isinstance(e, GuardrailDecided)]
    assert outcomes == [("assisted_wf", "approval_required"), ("shadow_wf", "shadowed")]


# --- approve -----------------------------------------------------------------------------


def decided(case_id: str, queue: str = "billing", action: ActionSpec = PLAN) -> GuardrailDecided:
    out = step(
        Guard(),
        [inbound(recommendation(case_id, action, queue=queue), "recommendations")],
        MemoryStore(),
    )
    [(_, decision)] = events(out)
    assert isinstance(decision, GuardrailDecided)
    return decision


def test_an_item_expires_at_its_expiry_by_timer_and_stays_closed() -> None:
    store, approve = MemoryStore(), Approve(SETTINGS, CODEC)
    decision = decided("c1", queue="expiring")  # approval_ttl_s: 2
    p = partition_for(b"c1", 6)
    step(approve, [inbound(decision, "decisions")], store)
    expiry = round(decision.expires_at.timestamp() * 1000)  # type: ignore[union-attr]
    assert store.read(ITEMS, p, decision.recommendation_id).due_ms == expiry  # type: ignore[union-attr]

    [due] = store.due(expiry)
    out = Outbox(CODEC, "t.", "t.approve")
    overlay = Overlay(store)
    approve.on_due([due], Step(overlay, out, POLICY, NOW + timedelta(seconds=3), 6))
    store.apply(overlay.changes())

    [(topic, expired)] = events(out)
    assert topic == "t.decisions" and isinstance(expired, ApprovalExpired)
    entry = store.read(ITEMS, p, decision.recommendation_id)
    assert entry is not None and entry.value["status"] == "expired" and entry.due_ms is None
    assert entry.expires_ms is not None  # kept for the retention period, then swept
    assert store.due(expiry + 10_000) == []


def test_a_review_read_before_its_decision_waits_then_is_taken() -> None:
    store, approve = MemoryStore(), Approve(SETTINGS, CODEC)
    decision = decided("c1")
    rec = recommendation("c1", PLAN, queue="billing")
    early = inbound(review(rec, "sam", ("supervisor",)), "reviews")
    p = early.partition

    assert step(approve, [early], store).records == []
    waiting = store.read(WAITING, p, rec.recommendation_id)
    assert waiting is not None and waiting.due_ms == round(NOW.timestamp() * 1000) + 60_000

    out = step(approve, [inbound(decision, "decisions")], store)

    kinds = [type(e).__name__ for _, e in events(out)]
    assert kinds == ["ReviewRecorded", "ApprovalCompleted", "ExecutionRequested"]
    assert store.read(WAITING, p, rec.recommendation_id) is None
    recorded = [e for _, e in events(out) if isinstance(e, ReviewRecorded)]
    assert recorded[0].actor == "sam"


def resolution(case_id: str) -> CaseResolved:
    from tests.unit.test_recommend_support import resolved

    return resolved(case_id, "plan_change", at=NOW)


def test_a_decision_read_after_its_case_resolved_closes_its_item_as_it_opens() -> None:
    store, approve = MemoryStore(), Approve(SETTINGS, CODEC)
    decision = decided("c1")
    p = partition_for(b"c1", 6)
    assert step(approve, [inbound(resolution("c1"), "cases")], store).records == []

    out = step(approve, [inbound(decision, "decisions")], store)

    [(_, closed)] = events(out)
    assert isinstance(closed, ApprovalCompleted) and closed.outcome == "closed"
    assert closed.reason == "case_resolved: resolved by agent.lou (done)"
    entry = store.read(ITEMS, p, decision.recommendation_id)
    assert entry is not None and entry.value["status"] == "closed" and entry.due_ms is None


def test_after_a_reopen_a_new_decision_opens_an_item_again() -> None:
    store, approve = MemoryStore(), Approve(SETTINGS, CODEC)
    step(approve, [inbound(resolution("c1"), "cases")], store)
    reopened = CaseReopened(event_id="reo-c1", case_id="c1", occurred_at=NOW, reason="again")
    step(approve, [inbound(reopened, "cases")], store)

    out = step(approve, [inbound(decided("c1"), "decisions")], store)

    assert [type(e).__name__ for _, e in events(out)] == []  # pending: waits for a review
    item = store.read(ITEMS, partition_for(b"c1", 6), "rec-c1-1")
    assert item is not None and item.value["status"] == "pending"


def test_recommend_keeps_no_view_of_an_imported_case_so_nothing_is_due_for_it() -> None:
    from processors.recommend.processor import VIEWS, Recommend
    from schemas.codec import IMPORT_HEADER

    recommend, store = Recommend(SETTINGS, CODEC), MemoryStore()
    opened = case_opened("c-old", "billing")
    update = CaseUpdated(
        event_id="upd-c-old",
        case_id="c-old",
        occurred_at=NOW,
        actor="kim",
        changes={"subject": "new words"},
        note=None,
    )
    marked = [
        replace(record, headers=[*(record.headers or []), (IMPORT_HEADER, b"history")])
        for record in (inbound(opened, "cases"), inbound(update, "cases"))
    ]
    out = Outbox(CODEC, "t.", "t.recommend")
    overlay = Overlay(store)
    batch_step = Step(overlay, out, POLICY, NOW, 6)
    # Whichever order the imported records are folded in, none is due.
    assert [recommend._fold(r, batch_step) for r in reversed(marked)] == [None, None]
    assert [recommend._fold(r, batch_step) for r in marked] == [None, None]
    assert overlay.get(VIEWS, marked[0].partition, "c-old") is None
    # The same case arriving live is due.
    live = recommend._fold(inbound(case_opened("c-new", "billing"), "cases"), batch_step)
    assert live is not None and live.case_id == "c-new"
    recommend.close()
