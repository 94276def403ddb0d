"""Pending sessions and their labels: from the ``play`` (the decision) to the outcome.

A ``play`` opens a :class:`PendingSession` that keeps the features and scores served at
the decision. Later events of the session update what is known so far (position,
rebuffering). The session's terminal event (``stop`` or ``complete``) resolves it into a
:class:`SessionOutcome`: completed (watched fraction >= threshold, or a ``complete`` event),
watched fraction and rebuffering ratio. A session with no event for ``timeout_ms`` of
*event time* is resolved by the timeout policy: ``abandon`` resolves it as not completed
with what was seen so far; ``drop`` forgets it. A ``rating`` after the end is an outcome of
its own (:func:`rating_outcome`). No wall clock is read anywhere.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from streamproc.features.extract import Features
from streamproc.records import ViewingEvent

__all__ = [
    "OutcomeKind",
    "PendingSession",
    "SessionOutcome",
    "SessionTracker",
    "TimeoutPolicy",
    "rating_outcome",
    "rebuffer_ratio",
    "watched_fraction",
]

TimeoutPolicy = Literal["abandon", "drop"]
OutcomeKind = Literal["session", "rating"]
TIMEOUT_POLICIES: tuple[TimeoutPolicy, ...] = ("abandon", "drop")
#: Below this much watched time (s) a rebuffering ratio says nothing: no QoE label.
MIN_WATCHED_S = 1.0


def watched_fraction(position_s: float, duration_s: float) -> float:
    """Fraction of the title watched, in [0, 1].

    Examples
    --------
    >>> watched_fraction(2700.0, 3600.0), watched_fraction(3700.0, 3600.0)
    (0.75, 1.0)
    """
    if duration_s <= 0.0:
        return 0.0
    return min(max(position_s / duration_s, 0.0), 1.0)


def rebuffer_ratio(rebuffer_ms: int, position_s: float) -> float | None:
    """Rebuffering time over watched time (the playhead position), or None if too short.

    Examples
    --------
    >>> rebuffer_ratio(3_000, 600.0), rebuffer_ratio(500, 0.2)
    (0.005, None)
    """
    if position_s < MIN_WATCHED_S:
        return None
    return rebuffer_ms / 1000.0 / position_s


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """A resolved label: what the models learn from and are scored on."""

    kind: OutcomeKind
    session_id: str
    user_id: str
    title_id: str
    event_time: int
    completed: bool = False
    watched_fraction: float = 0.0
    rebuffer_ratio: float | None = None
    rating: int | None = None
    timed_out: bool = False


def rating_outcome(event: ViewingEvent) -> SessionOutcome | None:
    """The outcome a ``rating`` event carries, or None when it has no rating.

    Examples
    --------
    >>> from streamproc.testing import make_viewing_event
    >>> out = rating_outcome(make_viewing_event(event_type="rating", rating=4, event_time=5))
    >>> out.kind, out.rating, out.event_time
    ('rating', 4, 5)
    """
    rating = event["rating"]
    if rating is None:
        return None
    return SessionOutcome(
        kind="rating",
        session_id=event["session_id"],
        user_id=event["user_id"],
        title_id=event["title_id"],
        event_time=event["event_time"],
        rating=rating,
    )


@dataclass(slots=True)
class PendingSession:
    """A session between its ``play`` and its outcome, with what was served at the play."""

    session_id: str
    user_id: str
    title_id: str
    genre: str | None
    play_event_id: str
    play_time: int
    last_time: int
    duration_s: float
    position_s: float = 0.0
    rebuffer_ms: int = 0
    features: dict[str, Features] = field(default_factory=dict)  # model -> features
    scores: dict[str, float] = field(default_factory=dict)  # model -> served score
    versions: dict[str, int] = field(default_factory=dict)  # model -> version that served

    def outcome(
        self, *, threshold: float, event_time: int, completed_event: bool, timed_out: bool
    ) -> SessionOutcome:
        """The outcome of the session from what is known of it now."""
        fraction = watched_fraction(self.position_s, self.duration_s)
        return SessionOutcome(
            kind="session",
            session_id=self.session_id,
            user_id=self.user_id,
            title_id=self.title_id,
            event_time=event_time,
            # abandon: a session that never ended is learned as not completed.
            completed=not timed_out and (completed_event or fraction >= threshold),
            watched_fraction=fraction,
            rebuffer_ratio=rebuffer_ratio(self.rebuffer_ms, self.position_s),
            timed_out=timed_out,
        )


class SessionTracker:
    """The pending sessions of a partition, oldest activity first.

    Parameters
    ----------
    completion_threshold
        Watched fraction at or above which a session completed.
    timeout_ms
        Event time without any event of a session after which it times out.
    timeout_policy
        ``abandon``: resolve a timed-out session as not completed; ``drop``: forget it.
    """

    def __init__(
        self,
        completion_threshold: float = 0.9,
        timeout_ms: int = 4 * 3600 * 1000,
        timeout_policy: TimeoutPolicy = "abandon",
    ) -> None:
        if not 0.0 < completion_threshold <= 1.0:
            raise ValueError(f"completion_threshold must be in (0, 1], got {completion_threshold}")
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms}")
        if timeout_policy not in TIMEOUT_POLICIES:
            raise ValueError(
                f"timeout_policy must be one of {', '.join(TIMEOUT_POLICIES)}, "
                f"got {timeout_policy!r}"
            )
        self.completion_threshold = completion_threshold
        self.timeout_ms = timeout_ms
        self.timeout_policy = timeout_policy
        # Ordered by last activity: expiry only ever looks at the front.
        self._pending: OrderedDict[str, PendingSession] = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._pending

    def get(self, session_id: str) -> PendingSession | None:
        """The pending session ``session_id``, if any."""
        return self._pending.get(session_id)

    def pending_sessions(self) -> list[PendingSession]:
        """The pending sessions, oldest activity first (for a snapshot)."""
        return list(self._pending.values())

    def restore(self, sessions: Iterable[PendingSession], *, dropped: int = 0) -> None:
        """Replace the pending sessions with ``sessions`` (oldest activity first)."""
        self._pending = OrderedDict((s.session_id, s) for s in sessions)
        self.dropped = dropped

    def open(self, session: PendingSession) -> None:
        """Start tracking ``session`` (a session already pending is replaced)."""
        self._pending[session.session_id] = session
        self._pending.move_to_end(session.session_id)

    def update(self, event: ViewingEvent) -> None:
        """Note a mid-session event: progress and rebuffering so far, last activity."""
        session = self._pending.get(event["session_id"])
        if session is None:
            return
        playback = event["playback"]
        session.position_s = playback["position_s"]
        session.rebuffer_ms = playback["rebuffer_ms"]
        if event["event_time"] > session.last_time:
            session.last_time = event["event_time"]
        self._pending.move_to_end(event["session_id"])

    def close(self, event: ViewingEvent) -> tuple[PendingSession, SessionOutcome] | None:
        """Resolve the session a ``stop``/``complete`` event ends; None if it is not pending."""
        session = self._pending.pop(event["session_id"], None)
        if session is None:
            return None
        playback = event["playback"]
        session.position_s = playback["position_s"]
        session.rebuffer_ms = playback["rebuffer_ms"]
        session.duration_s = playback["duration_s"]
        outcome = session.outcome(
            threshold=self.completion_threshold,
            event_time=event["event_time"],
            completed_event=event["event_type"] == "complete",
            timed_out=False,
        )
        return session, outcome

    def expire(self, now_ms: int) -> list[tuple[PendingSession, SessionOutcome]]:
        """Resolve sessions idle for longer than the timeout at event time ``now_ms``.

        Returns the outcomes to learn from: under ``drop`` none (the sessions are forgotten
        and counted in :attr:`dropped`).
        """
        resolved: list[tuple[PendingSession, SessionOutcome]] = []
        deadline = now_ms - self.timeout_ms
        pending = self._pending
        while pending:
            session = next(iter(pending.values()))
            if session.last_time >= deadline:
                break
            pending.popitem(last=False)
            if self.timeout_policy == "drop":
                self.dropped += 1
                continue
            resolved.append(
                (
                    session,
                    session.outcome(
                        threshold=self.completion_threshold,
                        event_time=session.last_time + self.timeout_ms,
                        completed_event=False,
                        timed_out=True,
                    ),
                )
            )
        return resolved
