"""``streamproc bench``: throughput, latency and cost of the pipeline on a real Kafka.

The harness, in the order a run uses it:

- :mod:`.preload`    simulated records (Avro) and the bulk producer that loads them
- :mod:`.pipeline`   worker processes on fresh topics: join, load, drain; throughput and lag
- :mod:`.latency`    a rate-limited producer at a fixed offered load; produce-to-prediction
- :mod:`.reference`  the same work in a plain confluent-kafka loop, one event at a time
- :mod:`.resources`  peak RSS and CPU time of processes, read from ``/proc``
- :mod:`.breakdown`  in-process cost of each step of the hot path, per event
- :mod:`.pyspy`      optional py-spy profile of a worker, grouped into the same steps
- :mod:`.harness`    the whole run: runs, order, aggregation
- :mod:`.report`     machine info, JSON and the Markdown table

Pure helpers (no Kafka): :mod:`.stats` (percentiles, median and range) and :mod:`.pacing`
(the rate limiter). The package lives in the repository, not in the streamproc wheel:
``streamproc bench`` runs from a checkout (``pip install -e .``).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_LATENCY_SECONDS",
    "DEFAULT_RUNS",
    "DEFAULT_WORKERS",
]

# The defaults live here, where importing them costs nothing (``streamproc --help`` shows them).
#: Records per measurement: chosen so that the default run (3 runs of 1 and 2 workers, the
#: reference loop and two latency points) ends within 10 minutes on a 2-core machine.
DEFAULT_EVENTS = 200_000
#: Runs of every measurement; each figure is their median with min-max.
DEFAULT_RUNS = 3
#: Worker counts measured.
DEFAULT_WORKERS = (1, 2)
#: Seconds of each latency load point.
DEFAULT_LATENCY_SECONDS = 10.0
