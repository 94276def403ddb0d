"""Drop repeated event ids within a window, without ever mistaking a replay for a duplicate.

The state maps ``event_id -> (partition, offset, seen_at_ms)`` of the record that first
carried the id. A record read again at the *same* partition and offset is a replay after a
crash or rebalance (at-least-once): it is passed on again, never dropped, so a crash can
repeat an event downstream but never lose one. A different record carrying an id seen within
the window is a duplicate.

The store is any mutable mapping that iterates in insertion order (a dict; the ingest agent
passes its Faust table's store and a callback that writes the change to the table's
changelog, so the state survives restarts). Ids are kept for the window, but never more than
``max_ids`` of them: memory grows with the ids seen within the window (about 270 bytes each),
so a high rate or a long window would otherwise grow without bound. Past ``max_ids`` the oldest
ids are forgotten first, a twentieth of ``max_ids`` at a time, and :attr:`evicted` counts them.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from itertools import islice

__all__ = ["Deduplicator"]

#: (partition, event_id, value or None for a deletion) -> None
ChangeCallback = Callable[[int, str, Sequence[int] | None], None]


class Deduplicator:
    """Tell duplicates from first sightings and replays.

    Parameters
    ----------
    window_ms
        An id seen again within this many milliseconds is a duplicate.
    store
        ``event_id -> (partition, offset, seen_at_ms)``.
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

    With ``max_ids`` the oldest ids go first, a twentieth of ``max_ids`` at a time:

    >>> d = Deduplicator(60_000, {}, max_ids=20)
    >>> [d.is_duplicate(f"e{i}", 0, i, now_ms=i) for i in range(21)].count(True)
    0
    >>> len(d.store), d.evicted, d.evicted_age_ms, "e0" in d.store, "e1" in d.store
    (19, 2, 19, False, False)
    """

    def __init__(
        self,
        window_ms: int,
        store: MutableMapping[str, Sequence[int]],
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
            if seen[0] == partition and seen[1] == offset:
                return False  # a replay of the very record that first carried the id
            if now_ms - seen[2] <= self.window_ms:
                return True
        # A tuple of ints, not a list: the garbage collector stops tracking it, so a table of
        # a million ids adds nothing to the worker's full collections (a list each did:
        # about 0.1 s per collection per million ids, a latency spike every few seconds).
        value = (partition, offset, now_ms)
        if seen is not None:
            del self.store[event_id]  # re-inserted last: the store stays in age order
        self.store[event_id] = value
        if self.on_change is not None:
            self.on_change(partition, event_id, value)
        if self.max_ids is not None and len(self.store) > self.max_ids:
            self._evict(now_ms)
        return False

    def _evict(self, now_ms: int) -> None:
        """Forget the oldest ids, down to ``max_ids`` less a twentieth (amortised O(1))."""
        assert self.max_ids is not None
        keep = self.max_ids - max(1, self.max_ids // 20)
        victims = list(islice(self.store.items(), len(self.store) - keep))
        for key, (partition, _offset, _seen_at) in victims:
            del self.store[key]
            if self.on_change is not None:
                self.on_change(partition, key, None)
        self.evicted += len(victims)
        self.evicted_age_ms = now_ms - victims[-1][1][2]

    def purge(self, *, now_ms: int) -> int:
        """Forget ids older than the window; return how many were forgotten."""
        horizon = now_ms - self.window_ms
        expired = [(k, v[0]) for k, v in list(self.store.items()) if v[2] < horizon]
        for key, partition in expired:
            del self.store[key]
            if self.on_change is not None:
                self.on_change(partition, key, None)
        return len(expired)
