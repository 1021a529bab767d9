"""A desk whose history names an action as its upstream system does (`crm:address.update`,
not casegate's `update_address`) catalogs it under that name and never rewrites its
history: through intake, recommend, guard and the read models on the real broker, the
recommender learns the name, the guard decides on it, and shadow alignment counts its hits
with both denominators; a resolution naming an action outside the rule is dead-lettered
with the rule, and the case stays open."""

from __future__ import annotations

import hashlib

from infra.settings import PROJECT_ROOT, Settings
from policy.checks import ACTION_NOT_IN_WORKFLOW, UNKNOWN_ACTION
from policy.loader import default_policy_path, load_policy_text
from schemas.codec import Codec
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseResolved,
    DeadLettered,
    Event,
    PolicyPublished,
)
from schemas.jsonform import loads
from tests.integration.helpers import eventually, rows, spawn, stop_all
from tests.integration.pipeline import Tail, send
from tests.integration.scenario import T0

DEMO = PROJECT_ROOT / "examples" / "demo"
UPSTREAM = "crm:address.update"  # what the desk's CRM calls casegate's update_address


def renamed(text: str) -> str:
    return text.replace("update_address", UPSTREAM)


def demo(name: str) -> list[Event]:
    return [loads(line) for line in renamed((DEMO / name).read_text()).splitlines() if line]


def desk_policy() -> PolicyPublished:
    text = renamed(default_policy_path().read_text(encoding="utf-8")).replace(
        'version: "2026.11.1"', 'version: "desk.1"'
    )
    loaded = load_policy_text(text)  # the upstream name is a valid catalog key
    assert UPSTREAM in loaded.policy.catalog
    return PolicyPublished(
        event_id="policy-desk-1",
        case_id="policy",
        occurred_at=T0,
        version=loaded.version,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        author="desk",
        document=text,
    )


def test_an_upstream_action_name_goes_through_the_pipeline_unchanged(settings: Settings) -> None:
    codec = Codec.load()
    history = demo("history.jsonl")
    later = demo("cases.jsonl")
    opened = [e for e in later if isinstance(e, CaseOpened)][:80]
    ids = {e.case_id for e in opened}
    # The first resolution of each case (the demo also reopens a few; not needed here).
    first: dict[str, CaseResolved] = {}
    for e in later:
        if isinstance(e, CaseResolved) and e.case_id in ids:
            first.setdefault(e.case_id, e)
    resolutions = list(first.values())
    bad_case = next(e for e in opened if not any(r.case_id == e.case_id for r in resolutions))
    refused = CaseResolved(
        event_id="resolved-with-a-space",
        case_id=bad_case.case_id,
        occurred_at=bad_case.occurred_at,
        resolved_by="ann",
        resolution_code="done",
        category="address_change",
        actions_taken=(ActionSpec(name="send reply"),),
    )
    assert any(
        a.name == UPSTREAM for e in history if isinstance(e, CaseResolved) for a in e.actions_taken
    )

    send(settings, codec, [desk_policy()])
    send(settings, codec, history)
    procs = [
        spawn(settings, "processors.worker", name, name)
        for name in ("intake", "recommend", "guard")
    ] + [spawn(settings, "projections.worker", "readmodels", "readmodels")]
    deadletters = Tail(settings, ("deadletter",), codec)
    try:
        history_cases = sum(isinstance(e, CaseOpened) for e in history)
        eventually(
            lambda: (
                rows(
                    settings,
                    "SELECT count(*) AS n FROM recommendation_facts WHERE outcome IS NOT NULL",
                )[0]["n"]
                >= history_cases
            ),
            timeout_s=240,
            what="the history's recommendations decided",
        )
        send(settings, codec, [*opened, *resolutions, refused])
        eventually(
            lambda: (
                rows(
                    settings,
                    "SELECT count(*) AS n FROM case_state WHERE case_id = ANY(%s) "
                    "AND resolution_count > 0",
                    [e.case_id for e in resolutions],
                )[0]["n"]
                == len(resolutions)
                and rows(
                    settings,
                    "SELECT count(*) AS n FROM recommendation_facts WHERE case_id = ANY(%s) "
                    "AND outcome IS NOT NULL",
                    list(ids),
                )[0]["n"]
                >= len(ids)
            ),
            timeout_s=180,
            what="the new cases recommended, decided and resolved",
        )
        deadletters.wait(
            lambda: any(
                isinstance(r.event, DeadLettered) and r.event.case_id == bad_case.case_id
                for r in deadletters.records
            ),
            timeout_s=60,
            what="the refused resolution dead-lettered",
        )
    finally:
        stop_all(procs)
        deadletters.close()

    # The recommender learned the upstream name and the guard decided on it as a catalog
    # action (shipping is in shadow: what bounded would do is recorded with the reasons).
    recommended = rows(
        settings,
        "SELECT outcome, reasons FROM recommendation_facts WHERE case_id = ANY(%s) "
        "AND action_name = %s",
        list(ids),
        UPSTREAM,
    )
    assert recommended, "no new case was recommended the upstream-named action"
    assert all(r["outcome"] == "shadowed" for r in recommended)
    # Known to the catalog and to the workflow: what bounded would say is about its
    # parameters (the demo's postal code is not visible to the model), never its name.
    unrecognised = {f"would_deny:{UNKNOWN_ACTION}", f"would_deny:{ACTION_NOT_IN_WORKFLOW}"}
    assert not any(unrecognised & set(r["reasons"]) for r in recommended), recommended

    # Alignment: one hit definition, both denominators.
    (shipping,) = rows(
        settings,
        "SELECT sum(action_matches) AS hits, sum(with_action) AS recommended, "
        "sum(humans_acted) AS acted FROM shadow_alignment WHERE workflow = 'shipping'",
    )
    taken = {e.case_id for e in resolutions if any(a.name == UPSTREAM for a in e.actions_taken)}
    assert taken and shipping["hits"] >= 1
    assert shipping["hits"] <= min(shipping["recommended"], shipping["acted"])
    rates = rows(
        settings,
        "SELECT action_matches, with_action, humans_acted, action_match_rate, action_hit_rate "
        "FROM shadow_alignment WHERE workflow = 'shipping' AND humans_acted > 0",
    )
    for r in rates:
        assert r["action_hit_rate"] == r["action_matches"] / r["humans_acted"]
    stored = rows(
        settings, "SELECT actions_taken FROM case_state WHERE case_id = ANY(%s)", list(taken)
    )
    assert all(UPSTREAM in r["actions_taken"] for r in stored)

    # The resolution outside the rule: dead-lettered with the rule, the case still open.
    (dead,) = [
        r.event
        for r in deadletters.records
        if isinstance(r.event, DeadLettered) and r.event.case_id == bad_case.case_id
    ]
    assert dead.reason.startswith("invalid_action_name: actions_taken[0]:")
    (state,) = rows(settings, "SELECT status FROM case_state WHERE case_id = %s", bad_case.case_id)
    assert state["status"] == "open"
