"""After table recovery the input partitions are sought before any of their records can flow.

The order is what prevents faust-streaming issue #596 (a stream queue cleared after input
records reached it, leaving a hole in the acknowledged offsets that blocks every later
commit of the partition). No broker: the consumer and fetcher are recording stand-ins.
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
    original_resume = flow.resume

    def resume() -> None:
        calls.append("clear_queues")
        original_resume()

    flow.resume = resume
    recovery._is_changelog_tp = lambda tp: tp == CHANGELOG
    recovery._wait = _await  # the service itself is not running
    app.assignor.assigned_standbys = lambda: set()
    asyncio.run(recovery.on_recovery_completed(generation_id=3))
    return calls, consumer


def test_input_partitions_are_sought_and_queues_cleared_before_they_resume() -> None:
    calls, consumer = _run_recovery_completed()
    assert calls.index("seek") < calls.index("clear_queues") < calls.index("resume_partitions")
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
