"""StallDetector on synthetic observation sequences, and LagMonitor without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streamproc.errors import KafkaError
from streamproc.kafka.lag import PartitionLag
from streamproc.metrics import StreamprocMetrics
from streamproc.observe.lag_monitor import LagMonitor, StallDetector

KEY = ("viewing-events", 0)


def run(detector: StallDetector, seq: Sequence[tuple[int | None, int, float]]) -> list[bool]:
    return [detector.observe(KEY, committed, lag, now) for committed, lag, now in seq]


def test_growing_lag_with_an_unmoved_commit_stalls_after_stall_after_s() -> None:
    seq = [(100, 10 * i, 10.0 * i) for i in range(1, 9)]  # t = 10..80, commit stuck at 100
    assert run(StallDetector(60.0), seq) == [False] * 6 + [True, True]  # stalled from t=70


def test_a_moving_commit_is_never_stalled_however_large_the_lag() -> None:
    seq = [(100 + i, 10_000 + 100 * i, 10.0 * i) for i in range(30)]
    assert not any(run(StallDetector(60.0), seq))


def test_constant_lag_is_idle_not_stalled() -> None:
    seq = [(100, 50, 10.0 * i) for i in range(30)]
    assert not any(run(StallDetector(60.0), seq))


def test_zero_lag_is_never_stalled() -> None:
    seq = [(100, 0, 10.0 * i) for i in range(30)]
    assert not any(run(StallDetector(60.0), seq))


def test_recovers_when_the_commit_moves_and_stalls_again_later() -> None:
    d = StallDetector(30.0)
    stuck = [(5, 10 + i, 10.0 * i) for i in range(5)]  # t=0..40
    assert run(d, stuck)[-1] is True
    assert d.stalled == frozenset({KEY})
    assert d.observe(KEY, 6, 14, 45.0) is False  # progress resets the timer
    assert d.stalled == frozenset()
    assert d.observe(KEY, 6, 20, 70.0) is False  # 25 s < 30 s
    assert d.observe(KEY, 6, 25, 75.0) is True


def test_a_group_that_never_committed_can_stall() -> None:
    seq = [(None, 10 * (i + 1), 10.0 * i) for i in range(8)]
    assert run(StallDetector(60.0), seq)[-1] is True


def test_forget_drops_the_history() -> None:
    d = StallDetector(10.0)
    run(d, [(1, 5, 0.0), (1, 9, 20.0)])
    assert d.is_stalled(KEY)
    d.forget(KEY)
    assert not d.is_stalled(KEY)
    assert d.observe(KEY, 1, 12, 25.0) is False  # starts timing afresh


def test_stall_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_after_s must be > 0 seconds, got 0"):
        StallDetector(0)


# --- LagMonitor with a fake fetch (no broker) ---------------------------------------------------


def row(partition: int, committed: int, lag: int, seconds: float | None = 1.0) -> PartitionLag:
    return PartitionLag(
        "streamproc", "viewing-events", partition, committed, committed + lag, lag, seconds, "m-1"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_monitor_exports_owned_partitions_and_removes_lost_ones() -> None:
    metrics = StreamprocMetrics.create(CollectorRegistry())
    owned = {("viewing-events", 0), ("viewing-events", 1)}
    rows = [row(0, 100, 5), row(1, 200, 0), row(2, 300, 7)]
    clock = FakeClock()
    monitor = LagMonitor(
        metrics, lambda: rows, group="streamproc", interval_s=5.0, stall_after_s=60.0,
        owned_partitions=lambda: owned, clock=clock,
    )  # fmt: skip
    assert not monitor.broker_ok()
    assert asyncio.run(monitor.check()) is True
    assert monitor.broker_ok()
    text = generate_latest(metrics.registry).decode()
    labels = 'group="streamproc",partition="0",topic="viewing-events"'
    assert f"streamproc_consumer_lag_records{{{labels}}} 5.0" in text
    assert 'partition="2"' not in text  # owned by another worker
    assert [r.partition for r in monitor.last_rows] == [0, 1]

    owned.discard(("viewing-events", 1))  # a rebalance moved partition 1 away
    clock.now = 5.0
    asyncio.run(monitor.check())
    text = generate_latest(metrics.registry).decode()
    assert 'partition="1"' not in text
    assert 'partition="0"' in text
    clock.now = 100.0
    assert not monitor.broker_ok()  # no success within 3 intervals


def test_monitor_sets_the_stall_gauge_and_clears_it() -> None:
    metrics = StreamprocMetrics.create(CollectorRegistry())
    current = [row(0, 100, 5)]
    clock = FakeClock()
    monitor = LagMonitor(
        metrics, lambda: current, group="streamproc", stall_after_s=30.0, clock=clock
    )

    def stalled_value() -> float | None:
        return metrics.registry.get_sample_value(
            "streamproc_partition_stalled",
            {"group": "streamproc", "topic": "viewing-events", "partition": "0"},
        )

    for t, lag in [(0.0, 5), (20.0, 50), (40.0, 90)]:
        clock.now = t
        current[:] = [row(0, 100, lag)]
        monitor.apply(monitor.fetch(), clock.now)
    assert stalled_value() == 1.0
    assert monitor.stalled == frozenset({("viewing-events", 0)})
    current[:] = [row(0, 190, 3)]
    monitor.apply(monitor.fetch(), 45.0)
    assert stalled_value() == 0.0


def test_monitor_counts_failures_and_keeps_running() -> None:
    metrics = StreamprocMetrics.create(CollectorRegistry())

    def fetch() -> list[PartitionLag]:
        raise KafkaError("cannot read the offsets of group 'streamproc': timed out")

    monitor = LagMonitor(metrics, fetch, group="streamproc", interval_s=0.01)

    async def run_briefly() -> None:
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.05)
        monitor.stop()
        await asyncio.wait_for(task, 1.0)

    asyncio.run(run_briefly())
    failures = metrics.registry.get_sample_value("streamproc_lag_check_failures_total")
    assert failures is not None and failures >= 2
    assert not monitor.broker_ok()


def test_a_worker_monitor_keeps_its_clients_open_and_closes_them_when_it_stops() -> None:
    from streamproc.config import load_settings
    from streamproc.kafka.lag import LagClients

    metrics = StreamprocMetrics.create(CollectorRegistry())
    monitor = LagMonitor.for_settings(load_settings(), metrics)
    assert isinstance(getattr(monitor.close_clients, "__self__", None), LagClients)
    clients = LagClients(load_settings(), "streamproc")
    assert clients.consumer is clients.consumer  # one client for every measurement, not one each
    closed: list[bool] = []
    monitor.fetch = lambda: []
    monitor.close_clients = lambda: closed.append(True)
    monitor.interval_s = 0.01

    async def run_briefly() -> None:
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.05)
        assert not closed
        monitor.stop()
        await asyncio.wait_for(task, 1.0)

    asyncio.run(run_briefly())
    assert closed == [True]
    clients.close()
