"""End to end on real Kafka: simulated events through the ingest worker, every one accounted for."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from streamproc.audit import audit_ingest
from streamproc.config import Settings
from streamproc.errors import KafkaError
from streamproc.kafka.lag import consumer_lag
from streamproc.kafka.read import read_to_end
from streamproc.kafka.topics import ensure_topics
from streamproc.produce import EventProducer
from streamproc.simulate import Manifest, SimParams, simulate_events
from streamproc.workers import wait_for_catch_up

if TYPE_CHECKING:
    from tests.integration.conftest import SettingsFactory

pytestmark = pytest.mark.integration

SNAPSHOT_KEY = "test:0123456789abcdef"


def _publish(
    settings: Settings, params: SimParams, *, rate: float | None = None
) -> tuple[Manifest, set[str]]:
    """Publish the simulated stream; at most ``rate`` records a second if given."""
    simulation = simulate_events(params, settings)
    valid_ids: set[str] = set()
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for i, record in enumerate(simulation):
            producer.send_raw(record.key, record.value)
            if record.kind == "valid" and record.event_id is not None:
                valid_ids.add(record.event_id)
            if rate is not None and i % 100 == 99:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        assert producer.flush(60.0) == 0
    return simulation.manifest, valid_ids


def _check_books(settings: Settings, manifest: Manifest, valid_ids: set[str]) -> None:
    report = audit_ingest(settings)
    counts = manifest.counts
    assert report.balanced, report.as_dict()
    assert report.input_records == counts["records"]
    assert report.valid == counts["valid"] == len(valid_ids)
    assert report.valid_event_ids == valid_ids
    assert report.dead == counts["invalid"]
    assert dict(report.dead_by_reason) == dict(manifest.invalid_by_reason)
    expected_dead = {i.event_id: i.reason for i in manifest.invalid if i.event_id}
    assert {k: report.dead_event_ids.get(k) for k in expected_dead} == expected_dead
    assert report.duplicates == counts["duplicate"]


def _params(seed: int) -> SimParams:
    return SimParams(
        n_events=20_000,
        n_users=800,
        n_titles=300,
        seed=seed,
        invalid_fraction=0.04,
        duplicate_fraction=0.015,
    )


def test_every_event_accounted_for(
    make_settings: SettingsFactory, tmp_path: Path, spawn_worker: Any
) -> None:
    # A table of at most 1,000 ids: the simulator re-sends a duplicate at most 200 records
    # later, so a bounded table still recognises every one while it forgets most ids. One
    # partition: the worker then processes records in the order they were sent (with several,
    # it takes a fetch of thousands of records of one partition, then of the next, so ids are
    # forgotten in an order that can put thousands of records between a record and its
    # duplicate; the bound is per worker, over all its partitions).
    settings = make_settings(
        agents="ingest",
        snapshot_keys=SNAPSHOT_KEY,
        metrics_port=0,
        dedupe_max_ids=1_000,
        partitions=1,
    )
    ensure_topics(settings)
    manifest, valid_ids = _publish(settings, _params(seed=11))
    assert manifest.counts["invalid"] / manifest.counts["records"] >= 0.03
    assert manifest.counts["duplicate"] / manifest.counts["records"] >= 0.01
    assert len(manifest.invalid_by_reason) >= 5  # mixed kinds of bad input

    with spawn_worker(settings, "worker") as worker:
        wait_for_catch_up(settings, [settings.topic_input], timeout=240, workers=[worker])
    _check_books(settings, manifest, valid_ids)
    # The forgotten ids left the changelog too (tombstones), so a restart keeps the bound.
    changelog = f"{settings.app_id}-ingest-seen-event-ids-changelog"
    values = [r.value for r in read_to_end(settings, changelog)]
    tombstones = sum(v is None for v in values)
    assert len(values) - 2 * tombstones <= 1_000 < tombstones


def test_sigkill_mid_run_loses_nothing(
    make_settings: SettingsFactory, tmp_path: Path, spawn_worker: Any
) -> None:
    settings = make_settings(agents="ingest", snapshot_keys=SNAPSHOT_KEY, metrics_port=0)
    ensure_topics(settings)
    # Records keep arriving (3,000 a second) while the worker runs, so that it is killed
    # mid-stream however fast it is.
    first = spawn_worker(settings, "worker-1")
    with ThreadPoolExecutor(1) as pool:
        published = pool.submit(_publish, settings, _params(seed=12), rate=3_000)
        total = _params(seed=12).n_events  # valid events; the stream has more records
        _kill_when_a_third_is_committed(settings, first, total)
        manifest, valid_ids = published.result(timeout=240)
    total = manifest.counts["records"]
    assert _committed(settings) < total, "the worker finished before it could be killed"

    with spawn_worker(settings, "worker-2") as second:
        wait_for_catch_up(settings, [settings.topic_input], timeout=240, workers=[second])
    _check_books(settings, manifest, valid_ids)


def _committed(settings: Settings) -> int:
    rows = consumer_lag(
        settings, settings.app_id, topics=[settings.topic_input], with_seconds=False
    )
    return sum((r.committed or 0) for r in rows)


def _kill_when_a_third_is_committed(settings: Settings, worker: Any, total: int) -> None:
    deadline = time.monotonic() + 180
    done = 0
    while done < total * 0.3:  # kill once about a third is committed: mid-run
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, f"no progress: {done}/{total}\n{worker.log_tail()}"
        try:
            done = _committed(settings)
        except KafkaError:
            continue  # the coordinator may still be loading
        time.sleep(0.2)
    worker.kill()
