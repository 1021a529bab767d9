"""Erasure without losing history, on the real broker and database: the scripted story's
cases belong to two customers; intake seals their personal data before anything else
keeps it; `casegate erase` destroys one customer's key. Then that customer's personal
data is unreadable in every table and in a replay, the other's still opens, the metrics
are what they were, and the audit chain still verifies."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from console.api.cases import case_trace
from console.auth import add_operator
from infra.db import database_urls
from infra.keys import KeyRing, Revealer, Wrapping, customer_id_ref, master_key
from infra.settings import Settings
from infra.topics import TOPICS
from policy.sealing import ERASED, MARK, ref_of
from projections.queries import DIMENSIONS, metrics
from schemas.codec import Codec
from schemas.events import CaseOpened, CaseUpdated, Event
from tests.chaos.check import audit_verify, replay_differences
from tests.integration.helpers import casegate, eventually, read_topic, running
from tests.integration.pipeline import send
from tests.integration.scenario import at, story
from tests.stack import Stack

ANA = {
    "id": "cu-ana-7731",
    "name": "Ana Quintero",
    "email": "ana.quintero@example.com",
    "phone": "+1 415 555 0101",
    "tier": "gold",
}
BO = {"id": "cu-bo-2208", "name": "Bo Lindqvist", "email": "bo.lindqvist@example.net"}
ANA_SECRETS = ("cu-ana-7731", "Ana Quintero", "ana.quintero@example.com", "415 555 0101")
BO_SECRETS = ("cu-bo-2208", "Bo Lindqvist", "bo.lindqvist@example.net")
ANA_CASES = ("c1", "c2", "c5", "c7")


def owned(event: Event) -> Event:
    """The story's event, its case belonging to Ana or Bo, with their data in the text."""
    if not isinstance(event, CaseOpened):
        return event
    who = ANA if event.case_id in ANA_CASES else BO
    return replace(
        event,
        subject=f"{event.subject} for {who['name']}",
        description=f"{event.description} Reach me at {who['email']}; {who['name']}.",
        customer=dict(who),
    )


def events() -> list[Event]:
    update = CaseUpdated(
        event_id="upd-c1",
        case_id="c1",
        occurred_at=at(4),
        actor="crm",
        changes={"customer.email": ANA["email"], "priority": "high"},
        note=f"moved: call {ANA['phone']}",
    )
    return [*map(owned, story()), update]


def table_texts(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    """Every row of every table and view of `schema`, as text (JSON columns included)."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    ]
    texts = {}
    for name in names:
        query = sql.SQL("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {} t").format(
            sql.Identifier(schema, name)
        )
        row = conn.execute(query).fetchone()
        texts[name] = row[0] if row else ""
    return texts


def leaks(texts: dict[str, str], secrets: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(table, s) for table, text in texts.items() for s in secrets if s in text]


def all_metrics(conn: psycopg.Connection, schema: str = "public") -> list[dict[str, Any]]:
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    try:
        return metrics(conn, list(DIMENSIONS))
    finally:
        conn.execute("SET search_path TO public")


def erase(settings: Settings, customer_id: str, token: str) -> subprocess.CompletedProcess[str]:
    return casegate(settings, "erase", customer_id, "--yes", "--reason", "t", token=token)


def test_erasure_makes_one_customers_data_unreadable_everywhere_and_keeps_metrics(
    stack: Stack,
) -> None:
    settings = stack.isolated()
    codec = Codec.load()
    sent = events()
    url = database_urls(settings).app
    revealer = Revealer.of(settings)

    def audited(n: int) -> bool:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        return bool(row and row[0] >= n)

    with running(settings, ("processors.worker", "intake"), ("projections.worker", "readmodels")):
        send(settings, codec, sent)
        eventually(lambda: audited(len(sent)), timeout_s=90, what=f"{len(sent)} audit rows")

        # Every topic casegate writes holds ciphertext only, before any erasure.
        case_events = [e for e in sent if e.topic == "cases"]
        on_cases = read_topic(settings, "cases", len(case_events))
        assert len(on_cases) == len(case_events)
        for spec in TOPICS:
            if spec.name in ("upstream", "audit-anchors"):
                continue
            for msg in read_topic(settings, spec.name, 10**6, timeout_s=3):
                raw = bytes(msg.value() or b"") + bytes(msg.key() or b"")
                for secret in (*ANA_SECRETS, *BO_SECRETS):
                    assert secret.encode() not in raw, (spec.name, secret)
        # Upstream's own topic keeps what upstream sent (documented: its retention is
        # upstream's to set); nothing casegate derives reads it again.
        upstream = read_topic(settings, "upstream", len(case_events))
        assert any(ANA["email"].encode() in bytes(m.value() or b"") for m in upstream)

        with psycopg.connect(url) as conn:
            assert leaks(table_texts(conn, "public"), (*ANA_SECRETS, *BO_SECRETS)) == []
            before = all_metrics(conn)
            ana_story = case_trace(conn, "c1", revealer)
            assert ana_story.case is not None and ANA["name"] in ana_story.case["subject"]
            opened_detail = ana_story.events[0].detail or {}
            assert opened_detail["customer"] == ANA
            update = [e for e in ana_story.events if e.event_type == "CaseUpdated"]
            assert [(e.detail or {}).get("note") for e in update] == [f"moved: call {ANA['phone']}"]
            assert any(ANA["email"] in e.summary for e in update)
            token = add_operator(conn, "sam", ("supervisor",), None, 3600)
            agent = add_operator(conn, "ada", ("agent",), None, 3600)
            conn.commit()
        assert before and sum(r["cases_opened"] for r in before) == 8

        refused = erase(settings, ANA["id"], agent)
        assert refused.returncode == 1 and "supervisor or ops" in refused.stderr
        done = erase(settings, ANA["id"], token)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 data key(s) destroyed by sam" in done.stdout
        eventually(lambda: audited(len(sent) + 1), timeout_s=60, what="the erasure audited")

        with psycopg.connect(url) as conn:
            live = table_texts(conn, "public")
            assert leaks(live, (*ANA_SECRETS, *BO_SECRETS)) == []
            # the scan is of real content: the sealed values are there, as tokens
            assert all(MARK in live[t] for t in ("case_state", "case_timeline", "audit_log"))
            ref = customer_id_ref(settings, ANA["id"])
            assert conn.execute(
                "SELECT count(*) FILTER (WHERE wrapped IS NULL), count(*) FROM data_keys "
                "WHERE customer_ref = %s",
                (ref,),
            ).fetchone() == (1, 1)
            erased_row = conn.execute(
                "SELECT actor, payload FROM audit_log WHERE event_type = 'CustomerErased'"
            ).fetchone()
            assert erased_row is not None and erased_row[0] == "sam"
            assert ref in erased_row[1] and ANA["id"] not in erased_row[1]
            # Ana's cases show the marker and nothing of her; Bo's still open.
            for case_id in ANA_CASES:
                shown = repr(case_trace(conn, case_id, revealer))
                assert ERASED in shown
                assert [s for s in ANA_SECRETS if s in shown] == []
            bo_story = case_trace(conn, "c3", revealer)
            assert (bo_story.events[0].detail or {})["customer"] == BO
            assert all_metrics(conn) == before

    ok, last = audit_verify(settings)
    assert ok, last
    differing = replay_differences(settings, codec)
    assert differing == dict.fromkeys(differing, 0)
    with psycopg.connect(url) as conn:
        rebuilt = table_texts(conn, "rebuild")
        assert rebuilt["audit_log"] and leaks(rebuilt, (*ANA_SECRETS, *BO_SECRETS)) == []
        assert all_metrics(conn, "rebuild") == before
        replayed = revealer.reveal(
            conn, conn.execute("SELECT detail FROM rebuild.case_timeline").fetchall()
        )
        assert [s for s in ANA_SECRETS if s in repr(replayed)] == []
        assert BO["name"] in repr(replayed)  # the keys table is live; Bo's data opens


def test_intake_key_lookups_are_one_statement_per_batch_and_agree_across_instances(
    settings: Settings,
) -> None:
    url = database_urls(settings).app
    wrapping = Wrapping(master_key(settings))
    rings = [KeyRing(url, wrapping, cache_s=60) for _ in range(4)]
    refs = [ref_of(b"k" * 32, f"customer:{n}") for n in range(300)]
    statements: list[int] = []
    first = rings[0]
    create = first._get_or_create
    first._get_or_create = lambda batch: statements.append(len(batch)) or create(batch)  # type: ignore[method-assign]

    # Four intake instances meet the same new customers at once.
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda ring: ring.keys_for(refs), rings))
    made = len(statements)
    first.keys_for(refs)  # again: from the cache

    # One statement for the batch's 300 customers, and again only for those another
    # instance created in the same instant (its rows were not in this statement's view).
    assert statements[0] == 300 and made <= 3 and len(statements) == made
    ids = [{ref: key.key_id for ref, key in keys.items()} for keys in found]
    assert all(i == ids[0] for i in ids) and len(ids[0]) == 300
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM data_keys").fetchone() == (300,)
    for ring in rings:
        ring.close()
