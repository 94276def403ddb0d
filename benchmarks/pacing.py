"""A rate limiter for an open-loop load: send ``i`` is due at ``start + i / rate``.

Open loop means the schedule does not wait for the system under test: when the sender falls
behind (a GC pause, a full queue), the next sends go out at once until it is back on
schedule, so the offered load over the run stays ``rate``. The clock and the sleep are
injected, so the arithmetic is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    """Spread sends evenly at ``rate`` per second.

    Parameters
    ----------
    rate
        Sends per second, > 0.
    clock
        Seconds, monotonic (default :func:`time.monotonic`).
    sleep
        Called with the seconds to wait (default :func:`time.sleep`).

    Examples
    --------
    >>> now = [0.0]
    >>> pacer = Pacer(4.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    >>> [pacer.wait() for _ in range(3)], now[0]
    ([0.0, 0.0, 0.0], 0.5)
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 sends a second, got {rate!r}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.sent = 0
        self.started: float | None = None
        self.max_behind_s = 0.0

    def due(self, index: int) -> float:
        """When send ``index`` (0-based) is due, on the pacer's clock."""
        if self.started is None:
            raise RuntimeError("the pacer has not started: call wait() first")
        return self.started + index / self.rate

    def wait(self) -> float:
        """Block until the next send is due; return how late it is (0 when on time), seconds."""
        now = self.clock()
        if self.started is None:
            self.started = now
        delay = self.due(self.sent) - now
        self.sent += 1
        if delay >= 0:
            if delay > 0:
                self.sleep(delay)
            return 0.0
        behind = -delay
        self.max_behind_s = max(self.max_behind_s, behind)
        return behind

    def elapsed(self) -> float:
        """Seconds since the first send (0 before it)."""
        return 0.0 if self.started is None else self.clock() - self.started
