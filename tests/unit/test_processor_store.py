"""Given the processors' state store, when a batch writes, a partition is restored from its
changelog, or timers and retention come due, then reads see exactly what the changelog
says, and nothing of an uncommitted batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.kafka import murmur2, partition_for
from processors.store import (
    Change,
    DiskStore,
    Entry,
    MemoryStore,
    Overlay,
    decode_entry,
    encode_entry,
    iter_changes,
)


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryStore | DiskStore:
    return MemoryStore() if request.param == "memory" else DiskStore(tmp_path / "s.sqlite")


def test_a_batch_sees_its_own_writes_and_the_store_none_until_applied(
    store: MemoryStore | DiskStore,
) -> None:
    store.apply([Change("views", 1, "c1", Entry({"n": 1}))])
    overlay = Overlay(store)

    overlay.put("views", 1, "c1", {"n": 2}, expires_ms=50)
    overlay.put("views", 1, "c2", {"n": 9})
    overlay.delete("views", 1, "c2")

    assert overlay.get("views", 1, "c1") == {"n": 2}
    assert overlay.get("views", 1, "c2") is None
    assert store.read("views", 1, "c1") == Entry({"n": 1})  # not committed yet
    # One change per key, its last value: what the changelog receives.
    assert overlay.changes() == [
        Change("views", 1, "c1", Entry({"n": 2}, 50)),
        Change("views", 1, "c2", None),
    ]
    store.apply(overlay.changes())
    assert store.read("views", 1, "c1") == Entry({"n": 2}, 50)
    assert store.read("views", 1, "c2") is None


def test_partitions_and_stores_do_not_see_each_other(store: MemoryStore | DiskStore) -> None:
    store.apply([Change("a", 0, "k", Entry(1)), Change("a", 1, "k", Entry(2))])

    assert store.read("a", 0, "k") == Entry(1)
    assert store.read("a", 1, "k") == Entry(2)
    assert store.read("b", 0, "k") is None


def test_timers_and_retention_come_due_by_the_clock(store: MemoryStore | DiskStore) -> None:
    store.apply(
        [
            Change("items", 0, "late", Entry("x", due_ms=300)),
            Change("items", 0, "soon", Entry("y", due_ms=100)),
            Change("items", 0, "old", Entry("z", expires_ms=100)),
            Change("items", 0, "kept", Entry("w")),
        ]
    )

    assert [d.key for d in store.due(200)] == ["soon"]
    assert [d.key for d in store.due(300)] == ["soon", "late"]
    assert store.expired(99) == []
    assert store.expired(100) == [("items", 0, "old")]


def test_pending_timers_are_counted_by_store_and_horizon(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "s.sqlite")
    store.apply(
        [
            Change("items", 0, "a", Entry(1, due_ms=100)),
            Change("items", 1, "b", Entry(1, due_ms=5_000)),
            Change("items", 1, "closed", Entry(1, expires_ms=100)),
            Change("waiting", 0, "w", Entry(1, due_ms=50)),
        ]
    )

    assert store.count_due("items") == 2
    assert store.count_due("items", before_ms=1_000) == 1
    assert store.count_due("waiting") == 1


def test_a_restore_replays_the_changelog_in_order_and_replaces_the_partition(
    tmp_path: Path,
) -> None:
    store = DiskStore(tmp_path / "s.sqlite")
    store.apply([Change("views", 2, "stale", Entry("from a previous owner"))])
    log = [
        (b"c1", encode_entry(Entry({"v": 1}))),
        (b"c2", encode_entry(Entry({"v": 1}, due_ms=7))),
        (b"c1", encode_entry(Entry({"v": 2}, expires_ms=9))),
        (b"c2", None),  # a tombstone: deleted after it was written
    ]

    read = store.restore("views", 2, log)

    assert read == 4
    assert store.read("views", 2, "c1") == Entry({"v": 2}, 9)
    assert store.read("views", 2, "c2") is None
    assert store.read("views", 2, "stale") is None
    assert store.count("views") == 1


def test_the_changelog_record_carries_value_retention_and_timer() -> None:
    entry = Entry({"status": "open", "n": [1, 2]}, expires_ms=1_000, due_ms=500)

    assert decode_entry(encode_entry(entry)) == entry
    assert encode_entry(None) is None and decode_entry(None) is None
    [(store, partition, key, value)] = iter_changes([Change("s", 3, "k", entry)])
    assert (store, partition, key, decode_entry(value)) == ("s", 3, b"k", entry)


def test_a_leftover_file_is_never_trusted(tmp_path: Path) -> None:
    first = DiskStore(tmp_path / "s.sqlite")
    first.apply([Change("views", 0, "c1", Entry(1))])
    first.close()

    again = DiskStore(tmp_path / "s.sqlite")  # a restart: the changelog is the truth

    assert again.read("views", 0, "c1") is None


def test_murmur2_matches_kafkas_reference_values() -> None:
    # Kafka's own test vectors for Utils.murmur2 (signed 32-bit results).
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, expected in vectors.items():
        got = murmur2(key)
        assert (got - 2**32 if got >= 2**31 else got) == expected, key
    assert partition_for(b"foobar", 6) == (murmur2(b"foobar") & 0x7FFFFFFF) % 6
