"""After table recovery no input record can flow before its partition is sought to its commit.

The order is what prevents a hole in the acknowledged offsets (input records fetched but
never handed to a stream), which blocks every later commit of the partition
(faust-streaming issue #596 and agents/recovery.py). No broker: the consumer and fetcher
are recording stand-ins.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import TP

from agents.recovery import SeekFirstRecovery, SeekFirstTableManager

INPUT = TP("events", 0)
CHANGELOG = TP("app-seen-changelog", 0)


class RecordingConsumer:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.resumed: set[TP] = set()

    def assignment(self) -> set[TP]:
        return {INPUT, CHANGELOG}

    async def perform_seek(self) -> None:
        self.calls.append("seek")

    def resume_partitions(self, tps: set[TP]) -> None:
        self.resumed |= set(tps)
        self.calls.append("resume_partitions")

    def resume_flow(self) -> None:
        self.calls.append("resume_flow")

    def stop_flow(self) -> None:
        self.calls.append("stop_flow")


class RecordingFetcher:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def maybe_start(self) -> None:
        self.calls.append("fetcher")


def _run_recovery_completed() -> tuple[list[str], RecordingConsumer]:
    app: Any = faust.App(
        "recovery-order", broker="kafka://127.0.0.1:1", TableManager=SeekFirstTableManager
    )
    assert isinstance(app.tables.recovery, SeekFirstRecovery)
    recovery: Any = app.tables.recovery
    calls: list[str] = []
    consumer = RecordingConsumer(calls)
    app._consumer = consumer
    app._fetcher = RecordingFetcher(calls)
    app.consumer_generation_id = 3
    flow = app.flow_control
    original_resume, original_suspend = flow.resume, flow.suspend

    def resume() -> None:
        calls.append("clear_queues")
        original_resume()

    def suspend() -> None:
        calls.append("hold_queues")
        original_suspend()

    flow.resume, flow.suspend = resume, suspend
    recovery._is_changelog_tp = lambda tp: tp == CHANGELOG
    recovery._wait = _await  # the service itself is not running
    app.assignor.assigned_standbys = lambda: set()
    asyncio.run(recovery.on_recovery_completed(generation_id=3))
    return calls, consumer


def test_input_partitions_resume_with_the_flow_stopped_and_are_sought_before_it_restarts() -> None:
    calls, consumer = _run_recovery_completed()
    assert calls.index("stop_flow") < calls.index("resume_partitions") < calls.index("seek")
    assert calls.index("hold_queues") < calls.index("resume_partitions")
    assert calls.index("seek") < calls.index("clear_queues") < calls.index("resume_flow")
    assert calls.count("seek") == calls.count("resume_partitions") == 1
    assert calls[-1] == "fetcher"
    assert consumer.resumed == {INPUT}  # the changelog partition stays paused


def test_a_newer_generation_resumes_nothing() -> None:
    app: Any = faust.App(
        "recovery-stale", broker="kafka://127.0.0.1:1", TableManager=SeekFirstTableManager
    )
    calls: list[str] = []
    app._consumer = RecordingConsumer(calls)
    app.consumer_generation_id = 4
    asyncio.run(app.tables.recovery.on_recovery_completed(generation_id=3))
    assert calls == []


async def _await(coro: Any, timeout: float | None = None) -> None:
    await coro
