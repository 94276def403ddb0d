"""Label resolution: complete, stop, timeouts under both policies, ratings."""

from __future__ import annotations

from typing import Any

import pytest

from streamproc.features import PendingSession, SessionTracker, rating_outcome
from streamproc.records import ViewingEvent
from streamproc.testing import make_viewing_event


def _pending(session_id: str = "s-1", at: int = 0) -> PendingSession:
    return PendingSession(
        session_id=session_id,
        user_id="u-1",
        title_id="t-1",
        genre="drama",
        play_event_id="e-play",
        play_time=at,
        last_time=at,
        duration_s=1000.0,
    )


def _event(kind: str, at: int, position: float, rebuffer_ms: int = 0, **kw: Any) -> ViewingEvent:
    event = make_viewing_event(event_type=kind, event_time=at, session_id="s-1", **kw)
    event["playback"]["position_s"] = position
    event["playback"]["duration_s"] = 1000.0
    event["playback"]["rebuffer_ms"] = rebuffer_ms
    return event


def test_complete_event_resolves_completed() -> None:
    tracker = SessionTracker()
    tracker.open(_pending())
    closed = tracker.close(_event("complete", 10, 850.0))
    assert closed is not None
    assert closed[1].completed and not closed[1].timed_out
    assert "s-1" not in tracker


@pytest.mark.parametrize(("position", "completed"), [(950.0, True), (899.0, False)])
def test_stop_uses_the_watched_fraction_threshold(position: float, completed: bool) -> None:
    tracker = SessionTracker(completion_threshold=0.9)
    tracker.open(_pending())
    closed = tracker.close(_event("stop", 10, position, rebuffer_ms=4_500))
    assert closed is not None
    outcome = closed[1]
    assert outcome.completed is completed
    assert outcome.watched_fraction == pytest.approx(position / 1000.0)
    assert outcome.rebuffer_ratio == pytest.approx(4.5 / position)


def test_end_of_an_unknown_session_resolves_nothing() -> None:
    assert SessionTracker().close(_event("stop", 10, 5.0)) is None


def test_timeout_abandon_learns_not_completed_with_what_was_seen() -> None:
    tracker = SessionTracker(timeout_ms=1_000, timeout_policy="abandon")
    tracker.open(_pending(at=0))
    tracker.update(_event("pause", 500, 950.0, rebuffer_ms=2_000))
    assert tracker.expire(1_400) == []  # idle 900 ms since the pause: not yet
    expired = tracker.expire(1_501)
    assert len(expired) == 1
    outcome = expired[0][1]
    assert outcome.timed_out and not outcome.completed  # even at 95 %
    assert outcome.watched_fraction == pytest.approx(0.95)
    assert outcome.event_time == 1_500
    assert len(tracker) == 0


def test_timeout_drop_forgets_and_counts() -> None:
    tracker = SessionTracker(timeout_ms=1_000, timeout_policy="drop")
    tracker.open(_pending("s-1", at=0))
    tracker.open(_pending("s-2", at=900))
    assert tracker.expire(1_500) == []
    assert tracker.dropped == 1
    assert "s-2" in tracker and "s-1" not in tracker


def test_rating_outcome() -> None:
    outcome = rating_outcome(make_viewing_event(event_type="rating", rating=2, event_time=7))
    assert outcome is not None and outcome.kind == "rating" and outcome.rating == 2
    assert rating_outcome(make_viewing_event(event_type="rating", event_time=7)) is None


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout_policy"):
        SessionTracker(timeout_policy="forget")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="completion_threshold"):
        SessionTracker(completion_threshold=0.0)


def test_restore_round_trip() -> None:
    tracker = SessionTracker()
    tracker.open(_pending("s-1"))
    other = SessionTracker()
    other.restore(tracker.pending_sessions(), dropped=3)
    assert "s-1" in other and other.dropped == 3
