"""Drop repeated event ids within a window, without ever mistaking a replay for a duplicate.

The state maps ``event_id -> [partition, offset, seen_at_ms]`` of the record that first
carried the id. A record read again at the *same* partition and offset is a replay after a
crash or rebalance (at-least-once): it is passed on again, never dropped, so a crash can
repeat an event downstream but never lose one. A different record carrying an id seen within
the window is a duplicate.

The store is any mutable mapping; the ingest agent passes its Faust table's store and a
callback that writes the change to the table's changelog, so the state survives restarts.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

__all__ = ["Deduplicator"]

#: (partition, event_id, value or None for a deletion) -> None
ChangeCallback = Callable[[int, str, list[int] | None], None]


class Deduplicator:
    """Tell duplicates from first sightings and replays.

    Parameters
    ----------
    window_ms
        An id seen again within this many milliseconds is a duplicate.
    store
        ``event_id -> [partition, offset, seen_at_ms]``.
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
    """

    def __init__(
        self,
        window_ms: int,
        store: MutableMapping[str, list[int]],
        on_change: ChangeCallback | None = None,
    ) -> None:
        self.window_ms = window_ms
        self.store = store
        self.on_change = on_change

    def is_duplicate(self, event_id: str, partition: int, offset: int, *, now_ms: int) -> bool:
        """True if ``event_id`` was first carried by another record within the window."""
        seen = self.store.get(event_id)
        if seen is not None:
            if seen[0] == partition and seen[1] == offset:
                return False  # a replay of the very record that first carried the id
            if now_ms - seen[2] <= self.window_ms:
                return True
        value = [partition, offset, now_ms]
        self.store[event_id] = value
        if self.on_change is not None:
            self.on_change(partition, event_id, value)
        return False

    def purge(self, *, now_ms: int) -> int:
        """Forget ids older than the window; return how many were forgotten."""
        horizon = now_ms - self.window_ms
        expired = [(k, v[0]) for k, v in list(self.store.items()) if v[2] < horizon]
        for key, partition in expired:
            del self.store[key]
            if self.on_change is not None:
                self.on_change(partition, key, None)
        return len(expired)
