"""Faust's Monitor sensor without its per-record statistics.

Faust calls its Monitor four times for every record a stream processes (message in, stream
event in and out, message out): counters by topic, stream and task, a dict of timings per
event, the string form of the stream. They feed Faust's web views, which the worker does not
serve (``web_enabled=False``; streamproc's own metrics are in :mod:`streamproc.metrics`).
:class:`QuietMonitor` keeps every other hook (commits, rebalances, sends, assignments) and
skips those four.
"""

from __future__ import annotations

from typing import Any

from faust.sensors import Monitor

__all__ = ["QuietMonitor"]


class QuietMonitor(Monitor):
    """:class:`faust.sensors.Monitor` minus the four per-record hooks."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(
        self, tp: Any, offset: int, stream: Any, event: Any
    ) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass
