"""Public helpers for tests of code built on streamproc (and of streamproc itself)."""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from streamproc.records import ViewingEvent

if TYPE_CHECKING:
    from streamproc.config import Settings
    from streamproc.simulate import Simulation

__all__ = ["make_viewing_event", "predictions_unlike_a_replay", "small_world_stream"]

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


def predictions_unlike_a_replay(
    settings: Settings, work_dir: Path, *, namespace: str = "replay-check"
) -> list[dict[str, Any]]:
    """The served predictions (the predictions topic) that a one-process replay of the valid
    topic does not make; empty when the workers computed exactly what the replay computes.

    A valid record written twice (at-least-once: after a crash, the input records after the
    last commit are validated and written again) is predicted twice, by the workers and by
    the replay alike, from the model state at each copy: a served score must equal the
    replay's score for one of the copies of its event. A prediction served twice for the
    same valid record (the model stage's own redelivery) has the same score both times.
    The replay's predictions go to ``work_dir/<namespace>.jsonl``.
    """
    import orjson

    from streamproc.emit.decode_any import decode_record
    from streamproc.ingest.schemas import load_schemas
    from streamproc.kafka.read import read_to_end
    from streamproc.registry.replay import replay_models

    path = Path(work_dir) / f"{namespace}.jsonl"
    replay_models(settings, namespace, predictions_out=path)
    replay: dict[tuple[str, str], list[float]] = {}
    for line in path.read_bytes().splitlines():
        p = orjson.loads(line)
        replay.setdefault((p["event_id"], p["model"]), []).append(p["score"])
    schemas = load_schemas(settings.schemas_path)
    served = [
        decode_record(rec.value or b"", schemas)[1]
        for rec in read_to_end(settings, settings.topic_predictions)
    ]
    return [
        p
        for p in served
        if not any(abs(p["score"] - s) <= 1e-9 for s in replay.get((p["event_id"], p["model"]), ()))
    ]
