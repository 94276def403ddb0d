"""The de-duplication table: window, replays, and the bound on the ids it keeps."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence

import pytest

from streamproc.ingest.dedupe import Deduplicator, Seen, pack_seen, unpack_seen


def test_the_table_never_holds_more_than_max_ids_and_forgets_the_oldest_first() -> None:
    changes: list[tuple[int, str, Sequence[int] | None]] = []
    d = Deduplicator(3_600_000, {}, lambda p, k, v: changes.append((p, k, v)), max_ids=1_000)
    for i in range(5_000):
        assert not d.is_duplicate(f"e{i}", i % 3, i, now_ms=1_000 + i)
        assert len(d.store) <= 1_000
    assert d.evicted == 5_000 - len(d.store)
    # The newest ids are kept, the oldest were forgotten, and each forgetting was persisted
    # (a tombstone), so a restart does not bring them back.
    assert "e4999" in d.store and "e0" not in d.store
    kept = min(int(k[1:]) for k in d.store)
    assert all(f"e{i}" in d.store for i in range(kept, 5_000))
    tombstones = [(p, k) for p, k, v in changes if v is None]
    assert len(tombstones) == d.evicted
    assert (0, "e0") in tombstones and (1, "e1") in tombstones  # in the id's own partition
    assert d.evicted_age_ms is not None and 0 < d.evicted_age_ms <= 1_000


def test_a_forgotten_id_is_no_longer_a_duplicate_a_kept_one_still_is() -> None:
    d = Deduplicator(3_600_000, {}, max_ids=100)
    for i in range(200):
        d.is_duplicate(f"e{i}", 0, i, now_ms=i)
    assert d.is_duplicate("e199", 0, 999, now_ms=300)  # kept: another record, same id
    assert not d.is_duplicate("e0", 0, 1_000, now_ms=300)  # forgotten: taken as new


def test_an_id_seen_again_after_its_window_moves_to_the_newest_end() -> None:
    d = Deduplicator(10, {}, max_ids=100)
    d.is_duplicate("old", 0, 0, now_ms=0)
    for i in range(50):
        d.is_duplicate(f"e{i}", 0, i + 1, now_ms=5)
    assert not d.is_duplicate("old", 0, 99, now_ms=20)  # outside its window: new again
    assert list(d.store)[-1] == "old"  # so it is not the first to be forgotten


def test_without_a_bound_nothing_is_forgotten_before_the_window_ends() -> None:
    d = Deduplicator(3_600_000, {})
    for i in range(3_000):
        d.is_duplicate(f"e{i}", 0, i, now_ms=i)
    assert len(d.store) == 3_000 and d.evicted == 0


def test_max_ids_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_ids must be at least 1, got 0"):
        Deduplicator(1_000, {}, max_ids=0)


def test_the_table_adds_nothing_for_the_garbage_collector_to_traverse() -> None:
    # A full collection visits every tracked object; a table of a million ids held as lists
    # made each one about 0.1 s longer. Tuples of ints are untracked after one collection.
    d = Deduplicator(3_600_000, {})
    for i in range(1_000):
        d.is_duplicate(f"e{i}", 0, i, now_ms=i)
    gc.collect()
    assert not any(gc.is_tracked(v) for v in d.store.values())


def test_values_recovered_from_the_changelog_as_lists_still_work() -> None:
    # Faust's table recovery fills the store with the JSON arrays of the changelog.
    d = Deduplicator(3_600_000, {"old": [2, 7, 1_000], "older": [1, 3, 500]}, max_ids=2)
    assert not d.is_duplicate("old", 2, 7, now_ms=2_000)  # a replay of its record
    assert d.is_duplicate("old", 2, 8, now_ms=2_000)
    # Past the bound the oldest go (down to max_ids less a two-hundredth, at least one): both lists.
    assert not d.is_duplicate("new", 0, 1, now_ms=2_000)
    assert list(d.store) == ["new"] and d.evicted == 2


def test_an_id_keeps_one_int_and_the_changelog_still_gets_its_three_numbers() -> None:
    changes: list[tuple[int, str, Sequence[int] | None]] = []
    d = Deduplicator(3_600_000, {}, lambda p, k, v: changes.append((p, k, v)))
    assert not d.is_duplicate("e1", 4, 2**40, now_ms=1_765_000_000_000)
    (value,) = d.store.values()
    assert type(value) is int  # one object per id, not a tuple of three
    assert unpack_seen(value) == (4, 2**40, 1_765_000_000_000)
    assert changes == [(4, "e1", (4, 2**40, 1_765_000_000_000))]  # the changelog's array
    assert d.is_duplicate("e1", 4, 2**40 + 1, now_ms=1_765_000_000_001)
    assert not d.is_duplicate("e1", 4, 2**40, now_ms=1_765_000_000_002)  # a replay


@pytest.mark.parametrize(
    ("partition", "offset", "seen_at_ms"),
    [(0, 0, 0), (2**24 - 1, 2**63 - 1, 2**45), (3, 17, -5), (-1, 5, 9), (2**24, 5, 9), (1, -1, 9)],
)
def test_packing_gives_back_the_same_three_numbers(
    partition: int, offset: int, seen_at_ms: int
) -> None:
    value = pack_seen(partition, offset, seen_at_ms)
    assert unpack_seen(value) == (partition, offset, seen_at_ms)
    d = Deduplicator(100, {"e": value})
    assert not d.is_duplicate("e", partition, offset, now_ms=seen_at_ms + 1)  # a replay
    assert d.is_duplicate("e", partition + 1, offset, now_ms=seen_at_ms + 1)


class _CountingDict(dict[str, Seen]):
    """A dict that counts the items its ``items()`` iterators hand out."""

    handed_out = 0

    def items(self) -> Iterator[tuple[str, Seen]]:  # type: ignore[override]
        for item in super().items():
            self.handed_out += 1
            yield item


def test_purge_stops_at_the_first_id_still_within_the_window() -> None:
    store = _CountingDict()
    d = Deduplicator(1_000, store)
    for i in range(10_000):
        d.is_duplicate(f"e{i}", 0, i, now_ms=i)
    assert d.purge(now_ms=1_100) == 100  # e0 .. e99 were seen before 100
    assert store.handed_out == 101  # the forgotten ids and the first one kept: no full scan
    assert next(iter(store)) == "e100" and len(store) == 9_900
