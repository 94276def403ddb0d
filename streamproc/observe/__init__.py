"""Operator side of a worker: lag and stall monitoring, and the HTTP status endpoints.

- :mod:`streamproc.observe.lag_monitor` -- :class:`LagMonitor` measures the worker's consumer
  lag off the event loop and sets the lag gauges; :class:`StallDetector` is its pure logic.
- :mod:`streamproc.observe.server` -- :class:`StatusServer` serves ``/metrics``, ``/health``,
  ``/ready``, ``/status.json`` and the ``/status`` page.
"""

from __future__ import annotations

from streamproc.observe.lag_monitor import LagMonitor, PartitionKey, StallDetector
from streamproc.observe.server import StatusServer

__all__ = ["LagMonitor", "PartitionKey", "StallDetector", "StatusServer"]
