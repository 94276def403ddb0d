"""Dead letters replayed after a fix go through validation again and keep their event ids."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from streamproc.audit import audit_ingest
from streamproc.emit.encode import Encoder
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.topics import ensure_topics
from streamproc.produce import EventProducer
from streamproc.testing import make_viewing_event
from streamproc.workers import wait_for_catch_up

pytestmark = pytest.mark.integration


def _cli(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc", *args],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_after_relaxing_a_rule(make_settings: Any, spawn_worker: Any) -> None:
    strict = make_settings(agents="ingest", metrics_port=0, position_slack_s=5.0)
    ensure_topics(strict)
    encoder = Encoder.for_record(load_schemas(strict.schemas_path), "ViewingEvent")
    late: list[str] = []
    with EventProducer(strict) as producer:
        for i in range(40):
            event = make_viewing_event(user_id=f"u-{i % 7}")
            if i % 4 == 0:  # a player that reports the end a little past the duration
                event["playback"]["position_s"] = event["playback"]["duration_s"] + 20.0
                late.append(event["event_id"])
            producer.send_raw(event["user_id"].encode(), encoder.encode(event))
        assert producer.flush(30) == 0

    with spawn_worker(strict, "strict") as worker:
        wait_for_catch_up(strict, [strict.topic_input], workers=[worker], timeout=120)
    before = audit_ingest(strict)
    assert before.dead == len(late)
    assert set(before.dead_event_ids) == set(late)

    inspect = _cli(strict, "dlq", "inspect", "--json")
    assert inspect.returncode == 0, inspect.stderr
    assert '"rule_violation:position_within_duration": 10' in inspect.stdout

    # The fix: a wider slack. Replay only those letters; they keep their event ids.
    relaxed = strict.model_copy(update={"position_slack_s": 60.0})
    dry = _cli(relaxed, "dlq", "replay", "--reason", "rule_violation", "--dry-run")
    assert dry.returncode == 0 and "would replay 10 dead letters" in dry.stdout
    done = _cli(relaxed, "dlq", "replay", "--reason", "rule_violation:position_within_duration")
    assert done.returncode == 0, done.stderr
    assert "replayed 10 dead letters" in done.stdout

    with spawn_worker(relaxed, "relaxed") as worker:
        wait_for_catch_up(relaxed, [relaxed.topic_input], workers=[worker], timeout=120)
    after = audit_ingest(relaxed)
    assert after.balanced
    assert after.input_records == 40 + 10
    assert set(late) <= after.valid_event_ids  # replayed, now valid, same ids
    assert after.valid == 30 + 10
