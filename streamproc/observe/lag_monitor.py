"""Consumer lag of a worker's own partitions, as gauges, with stalled-partition detection.

:class:`LagMonitor` asks the broker for the lag of the worker's consumer group every
``interval_s`` seconds (:func:`streamproc.kafka.lag.consumer_lag`), in a thread so that the
worker's event loop is never blocked by the admin requests, and then, on the loop:

- sets ``streamproc_consumer_lag_records`` / ``_seconds`` for the partitions this worker owns
  (the ``owned_partitions`` callback; the agent knows its assignment),
- removes the series of partitions it no longer owns, so a partition that moved to another
  worker after a rebalance is not counted by both,
- sets ``streamproc_partition_stalled`` from :class:`StallDetector`.

:class:`StallDetector` is the pure part: a sequence of (committed offset, lag, time)
observations per partition in, stalled or not out. It needs no Kafka and is unit-tested alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamproc.errors import StreamprocError
from streamproc.metrics import StreamprocMetrics

if TYPE_CHECKING:
    from streamproc.config import Settings
    from streamproc.kafka.lag import PartitionLag

__all__ = ["LagMonitor", "PartitionKey", "StallDetector"]

logger = logging.getLogger(__name__)

#: ``(topic, partition)``.
PartitionKey = tuple[str, int]


@dataclass(slots=True)
class _Track:
    committed: int | None  # the committed offset last seen
    since: float  # when it was first seen at that value
    lag_at_since: int  # the lag at that moment
    stalled: bool = False


class StallDetector:
    """Tell stalled partitions from merely busy or idle ones.

    A partition is *stalled* when its committed offset has not moved for at least
    ``stall_after_s`` seconds while its lag grew over that time: records keep arriving and
    nobody consumes them (a stuck agent, a poison record retried forever, a lost
    assignment). A partition with a constant lag and an unmoved offset is idle, not stalled;
    one whose committed offset moves is making progress, however large its lag.

    Parameters
    ----------
    stall_after_s
        How long the committed offset must stay put, seconds.

    Examples
    --------
    >>> d = StallDetector(stall_after_s=60.0)
    >>> d.observe(("viewing-events", 0), committed=100, lag=5, now=0.0)
    False
    >>> d.observe(("viewing-events", 0), committed=100, lag=50, now=30.0)
    False
    >>> d.observe(("viewing-events", 0), committed=100, lag=90, now=61.0)
    True
    >>> d.observe(("viewing-events", 0), committed=180, lag=10, now=65.0)
    False
    """

    def __init__(self, stall_after_s: float) -> None:
        if stall_after_s <= 0:
            raise ValueError(f"stall_after_s must be > 0 seconds, got {stall_after_s!r}")
        self.stall_after_s = stall_after_s
        self._tracks: dict[PartitionKey, _Track] = {}

    def __repr__(self) -> str:
        return f"StallDetector(stall_after_s={self.stall_after_s!r})"

    def observe(self, key: PartitionKey, committed: int | None, lag: int, now: float) -> bool:
        """Record one observation of ``key``; return whether it is stalled now.

        Parameters
        ----------
        key
            ``(topic, partition)``.
        committed
            The group's committed offset (``None``: never committed).
        lag
            Log-end offset minus committed offset, records.
        now
            A monotonic time, seconds; observations of one key come in time order.
        """
        track = self._tracks.get(key)
        if track is None or committed != track.committed:
            # First sight, or the group made progress (or was reset): start timing again.
            self._tracks[key] = _Track(committed, now, lag)
            return False
        track.stalled = (
            lag > 0 and lag > track.lag_at_since and now - track.since >= self.stall_after_s
        )
        return track.stalled

    def is_stalled(self, key: PartitionKey) -> bool:
        """Whether ``key`` was stalled at its last observation."""
        track = self._tracks.get(key)
        return track is not None and track.stalled

    @property
    def stalled(self) -> frozenset[PartitionKey]:
        """The partitions stalled at their last observation."""
        return frozenset(k for k, t in self._tracks.items() if t.stalled)

    def forget(self, key: PartitionKey) -> None:
        """Drop the history of ``key`` (the partition moved to another worker)."""
        self._tracks.pop(key, None)


class LagMonitor:
    """Measure the lag of this worker's partitions periodically and export it.

    Parameters
    ----------
    metrics
        Where the lag, stall and lag-check gauges live.
    fetch
        Blocking call returning the group's current lag rows; it runs in a worker thread.
        :meth:`for_settings` builds one from :func:`streamproc.kafka.lag.consumer_lag`.
    group
        The consumer group (the Faust app id): the ``group`` label.
    interval_s
        Seconds between two measurements.
    stall_after_s
        See :class:`StallDetector`.
    owned_partitions
        Returns the ``(topic, partition)`` pairs assigned to this worker now; it is called
        on the event loop. ``None``: export every partition ``fetch`` returns (a single
        worker, or a monitor outside a worker).
    clock
        Monotonic clock for stall timing and broker freshness (tests pass a fake).
    """

    def __init__(
        self,
        metrics: StreamprocMetrics,
        fetch: Callable[[], Sequence[PartitionLag]],
        *,
        group: str,
        interval_s: float = 5.0,
        stall_after_s: float = 60.0,
        owned_partitions: Callable[[], Iterable[PartitionKey]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {interval_s!r}")
        self.metrics = metrics
        self.fetch = fetch
        self.group = group
        self.interval_s = interval_s
        self.stall_after_s = stall_after_s
        self.owned_partitions = owned_partitions
        self.clock = clock
        self._detector = StallDetector(stall_after_s)
        self._exported: set[PartitionKey] = set()
        self._last_ok: float | None = None
        self._last_rows: tuple[PartitionLag, ...] = ()
        self._stopping = asyncio.Event()
        #: Releases the clients ``fetch`` keeps open (called when :meth:`run` returns).
        self.close_clients: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return (
            f"LagMonitor(group={self.group!r}, interval_s={self.interval_s!r}, "
            f"stall_after_s={self.stall_after_s!r})"
        )

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        metrics: StreamprocMetrics,
        *,
        topics: Sequence[str] | None = None,
        owned_partitions: Callable[[], Iterable[PartitionKey]] | None = None,
        with_seconds: bool = True,
    ) -> LagMonitor:
        """A monitor of ``settings.app_id`` on the topics a worker consumes.

        Parameters
        ----------
        settings
            Bootstrap servers, ``app_id`` (the group), ``lag_interval_s``, ``stall_after_s``.
        metrics
            The worker's metrics.
        topics
            Topics the worker consumes; default: the input and the valid-events topics.
        owned_partitions
            See :class:`LagMonitor`.
        with_seconds
            Also measure lag in seconds (one extra fetch per lagging partition).
        """
        from streamproc.kafka.lag import LagClients, consumer_lag

        clients = LagClients(settings, settings.app_id)
        wanted = (
            list(topics) if topics is not None else [settings.topic_input, settings.topic_valid]
        )
        # A measurement must finish well before the next one is due.
        timeout = max(1.0, min(10.0, settings.lag_interval_s))

        def fetch() -> list[PartitionLag]:
            with clients.lock:
                return consumer_lag(
                    settings, settings.app_id, topics=wanted, with_seconds=with_seconds,
                    timeout=timeout, clients=clients,
                )  # fmt: skip

        monitor = cls(
            metrics,
            fetch,
            group=settings.app_id,
            interval_s=settings.lag_interval_s,
            stall_after_s=settings.stall_after_s,
            owned_partitions=owned_partitions,
        )
        monitor.close_clients = clients.close
        return monitor

    # --- state read by the status server (any thread) ---------------------------------------

    def broker_ok(self) -> bool:
        """Whether a measurement succeeded within the last three intervals (for ``/ready``)."""
        last = self._last_ok
        return last is not None and self.clock() - last <= 3 * self.interval_s

    @property
    def last_rows(self) -> tuple[PartitionLag, ...]:
        """The rows of the last successful measurement, owned partitions only."""
        return self._last_rows

    @property
    def stalled(self) -> frozenset[PartitionKey]:
        """Owned partitions stalled at the last measurement."""
        return self._detector.stalled & frozenset(self._exported)

    # --- measuring --------------------------------------------------------------------------

    def apply(self, rows: Sequence[PartitionLag], now: float) -> None:
        """Export one measurement: set owned partitions' gauges, drop the others' series."""
        owned = set(self.owned_partitions()) if self.owned_partitions is not None else None
        kept: list[PartitionLag] = []
        seen: set[PartitionKey] = set()
        m = self.metrics
        for row in rows:
            key = (row.topic, row.partition)
            if owned is not None and key not in owned:
                continue
            kept.append(row)
            seen.add(key)
            labels = (self.group, row.topic, str(row.partition))
            m.consumer_lag_records.labels(*labels).set(row.lag)
            if row.lag_seconds is not None:
                m.consumer_lag_seconds.labels(*labels).set(row.lag_seconds)
            was_stalled = self._detector.is_stalled(key)
            stalled = self._detector.observe(key, row.committed, row.lag, now)
            m.partition_stalled.labels(*labels).set(1 if stalled else 0)
            if stalled and not was_stalled:
                logger.warning(
                    "partition %s[%d] of group %s is stalled: committed offset %s unmoved for "
                    ">= %.0f s while the lag grew to %d",
                    row.topic, row.partition, self.group, row.committed, self.stall_after_s,
                    row.lag,
                )  # fmt: skip
            elif was_stalled and not stalled:
                logger.info("partition %s[%d] is moving again", row.topic, row.partition)
        for topic, partition in self._exported - seen:
            m.remove_partition(self.group, topic, partition)
            self._detector.forget((topic, partition))
        self._exported = seen
        self._last_rows = tuple(kept)

    async def check(self) -> bool:
        """Measure once (the broker calls in a thread) and export; ``False`` if it failed."""
        try:
            rows = await asyncio.to_thread(self.fetch)
        except StreamprocError as exc:
            self.metrics.lag_check_failures.inc()
            logger.warning("cannot measure the lag of group %s: %s", self.group, exc)
            return False
        self.apply(rows, self.clock())
        self._last_ok = self.clock()
        self.metrics.lag_check_timestamp.set(time.time())
        return True

    async def run(self) -> None:
        """Measure every ``interval_s`` seconds until :meth:`stop` (run it as a task)."""
        self._stopping.clear()
        try:
            while not self._stopping.is_set():
                try:
                    await self.check()
                except Exception as exc:
                    # The monitor is an observer: an unexpected client error must not take
                    # the worker down with it. It is counted, logged with its traceback, and
                    # retried.
                    self.metrics.lag_check_failures.inc()
                    logger.error("lag check of group %s failed: %r", self.group, exc, exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)
        finally:
            await asyncio.to_thread(self.close_clients)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current measurement."""
        self._stopping.set()
