"""The worker's consumer: the fetch wait of the settings, and the per-record hand-over."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from typing import Any

import pytest
from mode import Service

from agents.app import create_app
from agents.transport import WorkerTransport, deliver
from streamproc.config import Settings


def test_the_worker_consumer_gets_fetch_wait_and_minimum_from_settings(settings: Settings) -> None:
    async def built() -> tuple[object, int, int]:
        app = create_app(
            settings.model_copy(
                update={
                    "agents": "ingest",
                    "consumer_fetch_wait_ms": 77,
                    "consumer_fetch_min_bytes": 8192,
                }
            )
        )
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
        try:
            return app.transport, consumer._fetch_max_wait_ms, consumer._fetch_min_bytes
        finally:
            await consumer.stop()

    transport, wait_ms, min_bytes = asyncio.run(built())
    assert isinstance(transport, WorkerTransport)
    assert (wait_ms, min_bytes) == (77, 8192)


# The fetch loop's per-record hand-over (agents.transport.deliver).

FAUST_DRAIN_MESSAGES_SHA256 = "44a2500309e83c63"


class _Flow:
    """The parts of Faust's suspend_flow event that deliver uses."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def is_set(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> bool:
        return await self.event.wait()


class _CountingService(Service):
    def __init__(self) -> None:
        super().__init__()
        self.races = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.races += 1
        return await super().wait_first(*coros, timeout=timeout)


def test_a_callback_that_does_not_wait_runs_without_any_task() -> None:
    async def run() -> tuple[list[int], int]:
        service, flow, seen = _CountingService(), _Flow(), []

        async def callback(message: Any) -> None:
            seen.append(message)  # nothing awaited: no suspension

        tasks_before = len(asyncio.all_tasks())
        for m in range(3):
            await deliver(service, callback, m, flow)
            assert len(asyncio.all_tasks()) == tasks_before
        return seen, service.races

    assert asyncio.run(run()) == ([0, 1, 2], 0)


def test_a_callback_that_waits_is_finished_in_a_race_as_faust_does() -> None:
    async def run() -> tuple[list[str], int]:
        service, flow, seen = _CountingService(), _Flow(), []
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def callback(message: Any) -> None:
            seen.append("before")
            seen.append(await gate)  # e.g. a stream's buffer is full
            await asyncio.sleep(0)  # and suspends once more after
            seen.append("after")

        asyncio.get_running_loop().call_later(0.01, gate.set_result, "released")
        await deliver(service, callback, "m", flow)
        return seen, service.races

    assert asyncio.run(run()) == (["before", "released", "after"], 1)


def test_a_waiting_callback_is_abandoned_when_the_flow_is_suspended() -> None:
    async def run() -> list[str]:
        service, flow, seen = _CountingService(), _Flow(), []

        async def callback(message: Any) -> None:
            seen.append("started")
            try:
                await asyncio.Event().wait()  # blocked, e.g. flow control acquired
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            seen.append("delivered")

        asyncio.get_running_loop().call_later(0.01, flow.event.set)  # a rebalance starts
        await asyncio.wait_for(deliver(service, callback, "m", flow), 5)
        await asyncio.sleep(0.01)  # let the cancellation reach the callback
        return seen

    assert asyncio.run(run()) == ["started", "cancelled"]


def test_with_the_flow_already_suspended_the_callback_runs_in_the_race() -> None:
    async def run() -> tuple[list[str], int]:
        service, flow, seen = _CountingService(), _Flow(), []
        flow.event.set()

        async def callback(message: Any) -> None:
            await asyncio.Event().wait()
            seen.append("delivered")

        await asyncio.wait_for(deliver(service, callback, "m", flow), 5)
        return seen, service.races

    assert asyncio.run(run()) == ([], 1)


def test_an_error_of_the_callback_reaches_the_fetch_loop_either_way() -> None:
    async def run(wait_first: bool) -> None:
        service, flow = _CountingService(), _Flow()

        async def callback(message: Any) -> None:
            if wait_first:
                await asyncio.sleep(0.001)
            raise ValueError("undecodable")

        await deliver(service, callback, "m", flow)

    for wait_first in (False, True):
        with pytest.raises(ValueError, match="undecodable"):
            asyncio.run(run(wait_first))


def test_the_replaced_faust_fetch_loop_is_the_one_copied() -> None:
    # agents.transport._Consumer._drain_messages is faust-streaming 0.15.3's with one line
    # changed. If this fails, Faust changed its loop: carry the change over, then update.
    from faust.transport.consumer import Consumer

    source = inspect.getsource(Consumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == FAUST_DRAIN_MESSAGES_SHA256
