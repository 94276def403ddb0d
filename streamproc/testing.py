"""Public helpers for tests of code built on streamproc (and of streamproc itself)."""

from __future__ import annotations

import copy
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

from streamproc.records import ViewingEvent

if TYPE_CHECKING:
    from streamproc.config import Settings
    from streamproc.simulate import Simulation

__all__ = ["make_viewing_event", "small_world_stream"]

_BASE: dict[str, Any] = {
    "event_id": "00000000-0000-0000-0000-000000000001",
    "session_id": "s-1",
    "user_id": "u-1",
    "title_id": "t-1",
    "event_type": "play",
    "event_time": 0,
    "device": {"type": "tv", "os": "tizen-7", "app_version": "8.112.0"},
    "network": {
        "connection_type": "wifi",
        "bandwidth_kbps": 25_000.0,
        "rtt_ms": 30.0,
        "cdn": "cdn-a",
        "isp": None,
    },
    "playback": {
        "position_s": 0.0,
        "duration_s": 3600.0,
        "bitrate_kbps": 5800,
        "rebuffer_count": 0,
        "rebuffer_ms": 0,
        "dropped_frames": None,
    },
    "region": "eu-west",
    "rating": None,
    "title": {"genre": "drama", "release_year": 2021},
    "seq": 0,
    "experiment": None,
}


def make_viewing_event(**overrides: Any) -> ViewingEvent:
    """A valid ViewingEvent (latest schema) with ``overrides`` applied at the top level.

    ``event_id`` defaults to a fresh UUID and ``event_time`` to now, unless given.

    >>> make_viewing_event(event_type="pause", user_id="u-9")["user_id"]
    'u-9'
    """
    event = copy.deepcopy(_BASE)
    event["event_id"] = str(uuid.uuid4())
    event["event_time"] = int(time.time() * 1000)
    event.update(overrides)
    return cast(ViewingEvent, event)


def small_world_stream(settings: Settings, n: int, seed: int) -> Simulation:
    """``n`` simulated records of a small world (400 users, 120 titles) with 3 % invalid
    records and 1 % duplicates: the stream the pipeline's integration tests publish."""
    from streamproc.simulate import SimParams, simulate_events

    return simulate_events(
        SimParams(
            n_events=n,
            n_users=400,
            n_titles=120,
            seed=seed,
            invalid_fraction=0.03,
            duplicate_fraction=0.01,
        ),
        settings,
    )
