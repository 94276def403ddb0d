"""The worker's Faust monitor keeps no per-record statistics, and every other hook."""

from __future__ import annotations

import asyncio

from faust.sensors import Monitor
from faust.types import TP

from agents.app import create_app
from agents.monitor import QuietMonitor
from streamproc.config import Settings


def test_the_app_monitor_skips_the_per_record_hooks_only(settings: Settings) -> None:
    async def built() -> Monitor:
        return create_app(settings.model_copy(update={"agents": "ingest"})).monitor

    monitor = asyncio.run(built())
    assert isinstance(monitor, QuietMonitor)
    tp = TP("t", 0)
    monitor.on_message_in(tp, 5, object())
    assert monitor.on_stream_event_in(tp, 5, object(), object()) is None
    monitor.on_message_out(tp, 5, object())
    assert monitor.messages_received_total == 0 and monitor.events_total == 0
    # Rare hooks still keep their statistics (here: committed offsets).
    monitor.on_tp_commit({tp: 6})
    assert monitor.tp_committed_offsets[tp] == 6
