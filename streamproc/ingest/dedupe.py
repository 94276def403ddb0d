"""Drop repeated event ids within a window, without ever mistaking a replay for a duplicate.

The state maps ``event_id -> (partition, offset, seen_at_ms)`` of the record that first
carried the id. A record read again at the *same* partition and offset is a replay after a
crash or rebalance (at-least-once): it is passed on again, never dropped, so a crash can
repeat an event downstream but never lose one. A different record carrying an id seen within
the window is a duplicate.

The store is any mutable mapping that iterates in insertion order (a dict; the ingest agent
passes its Faust table's store and a callback that writes the change to the table's
changelog, so the state survives restarts). Ids are kept for the window, but never more than
``max_ids`` of them: memory grows with the ids seen within the window, so a high rate or a long
window would otherwise grow without bound. Past ``max_ids`` the oldest ids are forgotten
first, a two-hundredth of ``max_ids`` at a time, and :attr:`evicted` counts them. (In chunks:
the dict's iteration from its oldest end first walks past the slots of the ids already
deleted, until the dict is next rebuilt. At the default 1,000,000 ids, with the changelog
writes, an eviction holds the event loop for 6-8 ms instead of the 75 ms of a twentieth, at
0.04 µs more per id; the dict's own rebuild, every 1,800,000 insertions or so, takes 38 ms.)

Each id's three numbers are kept packed in one int (:func:`pack_seen`): about 170 bytes per id
with its key and its slot in the dict, against 260 as a tuple of three ints (the tuple and two
int objects per id; measured with ``tracemalloc`` on 200,000 UUID ids). The callback still gets
the three numbers, and the changelog keeps its ``[partition, offset, seen_at_ms]`` arrays;
the arrays Faust's recovery puts back into the store are read as they are.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from itertools import islice, takewhile
from typing import cast

__all__ = ["Deduplicator", "Seen", "pack_seen", "unpack_seen"]

#: (partition, event_id, (partition, offset, seen_at_ms) or None for a deletion) -> None
ChangeCallback = Callable[[int, str, Sequence[int] | None], None]
#: A stored value: a packed int (:func:`pack_seen`), or a ``[partition, offset, seen_at_ms]``
#: sequence (recovered from the changelog, or numbers out of the packed ranges).
Seen = int | Sequence[int]

_PARTITION_BITS = 24
_OFFSET_BITS = 63  # Kafka offsets are signed 64-bit, never negative
_SEEN_SHIFT = _PARTITION_BITS + _OFFSET_BITS
_PARTITION_MASK = (1 << _PARTITION_BITS) - 1
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1


def pack_seen(partition: int, offset: int, seen_at_ms: int) -> Seen:
    """``(partition, offset, seen_at_ms)`` as one int, or as a tuple if they do not fit.

    One int object instead of a tuple and two ints: 88 bytes less per id kept. It fits for
    every Kafka partition (< 2**24) and offset (0 <= offset < 2**63); any ``seen_at_ms``.

    >>> v = pack_seen(5, 123_456_789, 1_765_000_000_000)
    >>> type(v).__name__, unpack_seen(v)
    ('int', (5, 123456789, 1765000000000))
    >>> pack_seen(-1, 0, 0), unpack_seen([2, 7, 1000])
    ((-1, 0, 0), (2, 7, 1000))
    """
    if 0 <= partition <= _PARTITION_MASK and 0 <= offset <= _OFFSET_MASK:
        return (seen_at_ms << _SEEN_SHIFT) | (offset << _PARTITION_BITS) | partition
    return (partition, offset, seen_at_ms)


def unpack_seen(value: Seen) -> tuple[int, int, int]:
    """``(partition, offset, seen_at_ms)`` of a stored value (see :func:`pack_seen`)."""
    if type(value) is int:
        return (
            value & _PARTITION_MASK,
            (value >> _PARTITION_BITS) & _OFFSET_MASK,
            value >> _SEEN_SHIFT,
        )
    partition, offset, seen_at_ms = cast(Sequence[int], value)
    return partition, offset, seen_at_ms


def _seen_at(value: Seen) -> int:
    return value >> _SEEN_SHIFT if type(value) is int else cast(Sequence[int], value)[2]


def _partition_of(value: Seen) -> int:
    return value & _PARTITION_MASK if type(value) is int else cast(Sequence[int], value)[0]


class Deduplicator:
    """Tell duplicates from first sightings and replays.

    Parameters
    ----------
    window_ms
        An id seen again within this many milliseconds is a duplicate.
    store
        ``event_id -> (partition, offset, seen_at_ms)``, packed (:func:`pack_seen`).
    on_change
        Called after each write or deletion (to persist it), with the partition.

    Examples
    --------
    >>> d = Deduplicator(60_000, {})
    >>> d.is_duplicate("e1", 0, 10, now_ms=1_000)   # first sighting
    False
    >>> d.is_duplicate("e1", 0, 10, now_ms=2_000)   # the same record replayed
    False
    >>> d.is_duplicate("e1", 0, 11, now_ms=3_000)   # another record, same id
    True
    >>> d.purge(now_ms=100_000)
    1

    With ``max_ids`` the oldest ids go first, a two-hundredth of ``max_ids`` (at least one) at a
    time:

    >>> d = Deduplicator(60_000, {}, max_ids=20)
    >>> [d.is_duplicate(f"e{i}", 0, i, now_ms=i) for i in range(21)].count(True)
    0
    >>> len(d.store), d.evicted, d.evicted_age_ms, "e0" in d.store, "e1" in d.store
    (19, 2, 19, False, False)
    """

    def __init__(
        self,
        window_ms: int,
        store: MutableMapping[str, Seen],
        on_change: ChangeCallback | None = None,
        *,
        max_ids: int | None = None,
    ) -> None:
        if max_ids is not None and max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, got {max_ids}")
        self.window_ms = window_ms
        self.store = store
        self.on_change = on_change
        self.max_ids = max_ids
        #: Ids forgotten before the end of their window to stay within ``max_ids``.
        self.evicted = 0
        #: Age (ms) of the youngest id forgotten that way, at its eviction: the window the
        #: table actually covered then.
        self.evicted_age_ms: int | None = None

    def is_duplicate(self, event_id: str, partition: int, offset: int, *, now_ms: int) -> bool:
        """True if ``event_id`` was first carried by another record within the window."""
        seen = self.store.get(event_id)
        if seen is not None:
            seen_partition, seen_offset, seen_at_ms = unpack_seen(seen)
            if seen_partition == partition and seen_offset == offset:
                return False  # a replay of the very record that first carried the id
            if now_ms - seen_at_ms <= self.window_ms:
                return True
        # An int (or a tuple of ints), never a list: the garbage collector does not track it,
        # so a table of a million ids adds nothing to the worker's full collections (a list
        # each did: about 0.1 s per collection per million ids, a latency spike every few s).
        if seen is not None:
            del self.store[event_id]  # re-inserted last: the store stays in age order
        self.store[event_id] = pack_seen(partition, offset, now_ms)
        if self.on_change is not None:
            self.on_change(partition, event_id, (partition, offset, now_ms))
        if self.max_ids is not None and len(self.store) > self.max_ids:
            self._evict(now_ms)
        return False

    def _evict(self, now_ms: int) -> None:
        """Forget the oldest ids, down to ``max_ids`` less a two-hundredth."""
        assert self.max_ids is not None
        keep = self.max_ids - max(1, self.max_ids // 200)
        victims = list(islice(self.store.items(), len(self.store) - keep))
        self._forget(victims)
        self.evicted += len(victims)
        self.evicted_age_ms = now_ms - _seen_at(victims[-1][1])

    def purge(self, *, now_ms: int) -> int:
        """Forget ids older than the window, oldest first; return how many were forgotten.

        The store is in age order, so this stops at the first id still within the window:
        the cost is the ids forgotten, not the ids kept (a scan of a million ids held the
        event loop for tens of milliseconds every purge). Ids a recovery put back out of age
        order (one partition's changelog after another's) may stay until those before them
        go, or ``max_ids`` pushes them out; an id past its window is never a duplicate anyway.

        >>> d = Deduplicator(10, {})
        >>> [d.is_duplicate(f"e{i}", 0, i, now_ms=t) for i, t in enumerate((0, 5, 30))]
        [False, False, False]
        >>> d.purge(now_ms=20), list(d.store)
        (2, ['e2'])
        """
        horizon = now_ms - self.window_ms
        expired = list(takewhile(lambda item: _seen_at(item[1]) < horizon, self.store.items()))
        self._forget(expired)
        return len(expired)

    def _forget(self, items: list[tuple[str, Seen]]) -> None:
        """Delete these ids, each with a tombstone to ``on_change`` (in its own partition)."""
        for key, value in items:
            del self.store[key]
            if self.on_change is not None:
                self.on_change(_partition_of(value), key, None)
