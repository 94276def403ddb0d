"""The pipeline under test: ``streamproc worker`` processes on fresh topics.

A :class:`PipelineSession` creates the topics of one measurement (a fresh prefix, so runs
never share topics, consumer groups or snapshots), starts the workers (agents
``ingest,model``) and waits until the group has settled with every input and valid partition
owned. :meth:`PipelineSession.measure_throughput` then loads the records and waits until the
group's lag on the input and the valid topic is 0 (:func:`streamproc.kafka.lag.consumer_lag`,
the broker's committed offsets): throughput = records / (drained - first record queued).
Workers join *before* the load so that no rebalance falls inside the measured window.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.preload import BenchRecord, end_offsets, load_records, topic_record_count
from benchmarks.resources import CpuMeter, peak_rss_bytes, total
from streamproc.config import Settings, prefixed
from streamproc.errors import KafkaError, StreamprocError
from streamproc.kafka.lag import LagClients, PartitionLag, consumer_lag
from streamproc.kafka.topics import ensure_topics
from streamproc.workers import WorkerProcess

__all__ = [
    "DrainProgress",
    "PipelineSession",
    "ThroughputResult",
    "measurement_settings",
]

Say = Callable[[str], None]

#: Seconds between two lag readings while waiting for the group to drain.
POLL_INTERVAL_S = 0.2
#: The workers have this long to join the group and own every partition.
JOIN_TIMEOUT_S = 120.0


def measurement_settings(base: Settings, prefix: str, **overrides: Any) -> Settings:
    """``base`` with every topic and the app id under ``prefix``, agents ``ingest,model``.

    The metrics port is turned off (several workers on one host would compete for it; the
    server only answers scrapes, it costs nothing per event).

    >>> s = measurement_settings(Settings(), "bench1-r1-w1")
    >>> s.topic_input, s.app_id, s.agents
    ('bench1-r1-w1-viewing-events', 'bench1-r1-w1-streamproc', 'ingest,model')
    """
    return prefixed(base, prefix, **{"agents": "ingest,model", "metrics_port": 0, **overrides})


@dataclass(frozen=True, slots=True)
class DrainProgress:
    """One lag reading while the workers drain the backlog."""

    elapsed_s: float
    ingested: int  # committed offsets on the input topic
    scored: int  # committed offsets on the valid topic
    valid_end: int  # records on the valid topic


@dataclass
class ThroughputResult:
    """One throughput measurement of the pipeline."""

    workers: int
    events: int
    seconds: float
    load_seconds: float
    worker_pids: list[int]
    peak_rss_bytes: list[int | None]
    cpu_s: dict[str, float | None]  # process name -> CPU seconds within the window
    counts: dict[str, int] = field(default_factory=dict)
    input_end_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_event_us(self, prefix: str) -> float | None:
        """CPU µs per event of the processes whose name starts with ``prefix`` together."""
        used = total(v for k, v in self.cpu_s.items() if k.startswith(prefix))
        return None if used is None or not self.events else used / self.events * 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "events": self.events,
            "seconds": self.seconds,
            "throughput_eps": self.throughput,
            "load_seconds": self.load_seconds,
            "load_rate_eps": self.events / self.load_seconds if self.load_seconds else None,
            "worker_pids": self.worker_pids,
            "peak_rss_bytes": self.peak_rss_bytes,
            "cpu_s": self.cpu_s,
            "worker_cpu_us_per_event": self.cpu_per_event_us("worker"),
            "broker_cpu_us_per_event": self.cpu_per_event_us("broker"),
            "harness_cpu_us_per_event": self.cpu_per_event_us("harness"),
            "counts": self.counts,
        }


class PipelineSession:
    """Fresh topics and ``workers`` worker processes for one measurement.

    Parameters
    ----------
    settings
        From :func:`measurement_settings` (topics and app id of this measurement only).
    workers
        Worker processes to start.
    log_dir
        The workers' logs (``<app_id>-<i>.log``).
    broker_pids
        name -> pid of the broker processes, for their CPU time (empty: not measured).
    say
        Progress messages.
    """

    def __init__(
        self,
        settings: Settings,
        workers: int,
        log_dir: Path,
        *,
        broker_pids: Mapping[str, int] | None = None,
        say: Say | None = None,
    ) -> None:
        self.settings = settings
        self.n_workers = workers
        self.log_dir = log_dir
        self.broker_pids = dict(broker_pids or {})
        self.say: Say = say or (lambda _m: None)
        self.workers: list[WorkerProcess] = []
        self.loaded = 0  # records written to the input topic so far
        # One kept-open consumer for the drain readings: a reading then costs a few requests
        # (about 10 ms) instead of new clients (about 3 s), which set the resolution of the
        # measured drain time.
        self._lag_clients = LagClients(settings, settings.app_id)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> PipelineSession:
        ensure_topics(self.settings)
        for i in range(1, self.n_workers + 1):
            log = self.log_dir / f"{self.settings.app_id}-{i}.log"
            self.workers.append(WorkerProcess(self.settings, log).start())
        return self

    def stop(self) -> None:
        """SIGTERM every worker at once and wait (they commit, snapshot and flush)."""
        self._lag_clients.close()
        if not self.workers:
            return
        with ThreadPoolExecutor(len(self.workers)) as pool:
            list(pool.map(lambda w: w.stop(60.0), self.workers))

    def __enter__(self) -> PipelineSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None]

    def check_alive(self) -> None:
        for i, worker in enumerate(self.workers, start=1):
            if not worker.alive():
                raise StreamprocError(
                    f"worker {i} (pid {worker.pid}) of {self.settings.app_id} exited; the end of "
                    f"its log {worker.log_path}:\n{worker.log_tail()}"
                )

    def _lag(self) -> list[PartitionLag]:
        s = self.settings
        try:
            return consumer_lag(
                s, s.app_id, topics=[s.topic_input, s.topic_valid], with_seconds=False, timeout=5
            )
        except KafkaError:
            return []  # the group coordinator is still loading: ask again

    def _drain_lag(self) -> list[PartitionLag]:
        s = self.settings
        with self._lag_clients.lock:
            try:
                return consumer_lag(
                    s,
                    s.app_id,
                    topics=[s.topic_input, s.topic_valid],
                    with_seconds=False,
                    timeout=5,
                    clients=self._lag_clients,
                )
            except KafkaError:
                return []  # the group coordinator is still loading: ask again

    def wait_joined(self, timeout: float = JOIN_TIMEOUT_S) -> float:
        """Wait until each worker owns partitions and every partition has an owner."""
        started = time.monotonic()
        while True:
            self.check_alive()
            rows = self._lag()
            members = {r.member for r in rows if r.member}
            if rows and all(r.member for r in rows) and len(members) == self.n_workers:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise StreamprocError(
                    f"the {self.n_workers} worker(s) of {self.settings.app_id} did not settle in "
                    f"{timeout:.0f} s ({len(members)} member(s) own partitions); see "
                    f"{self.log_dir}"
                )
            time.sleep(POLL_INTERVAL_S)

    # -- measuring -------------------------------------------------------------------------------

    def wait_drained(
        self,
        *,
        started: float,
        timeout: float,
        on_progress: Callable[[DrainProgress], None] | None = None,
    ) -> float:
        """Wait until the lag on the input and the valid topic is 0; return when it was first.

        "Drained" must be seen on two readings in a row with the same log-end offsets (a valid
        record still in the ingest agent's producer buffer cannot be mistaken for the end);
        the time returned is that of the first of them (mid-point of its request).
        """
        s = self.settings
        candidate: float | None = None
        last_ends: dict[tuple[str, int], int] | None = None
        while True:
            self.check_alive()
            before = time.monotonic()
            rows = self._drain_lag()
            at = (before + time.monotonic()) / 2
            ends = {(r.topic, r.partition): r.log_end for r in rows}
            ingested = sum(r.committed or 0 for r in rows if r.topic == s.topic_input)
            drained = bool(rows) and all(r.lag == 0 for r in rows) and ingested >= self.loaded
            if drained and candidate is not None and ends == last_ends:
                return candidate
            candidate = (candidate or at) if drained else None
            last_ends = ends
            if on_progress is not None and rows:
                on_progress(
                    DrainProgress(
                        at - started,
                        ingested,
                        sum(r.committed or 0 for r in rows if r.topic == s.topic_valid),
                        sum(r.log_end for r in rows if r.topic == s.topic_valid),
                    )
                )
            if time.monotonic() - started > timeout:
                behind = sum(r.lag for r in rows)
                raise StreamprocError(
                    f"the workers of {s.app_id} are still {behind:,} records behind after "
                    f"{timeout:.0f} s; see their logs in {self.log_dir}"
                )
            time.sleep(POLL_INTERVAL_S)

    def measure_throughput(
        self,
        records: list[BenchRecord],
        *,
        timeout: float,
        on_progress: Callable[[DrainProgress], None] | None = None,
    ) -> ThroughputResult:
        """Load ``records`` into the (empty) input topic and time until the group drains it."""
        s = self.settings
        pids = {f"worker-{i}": pid for i, pid in enumerate(self.pids, start=1)}
        meter = CpuMeter({**pids, **self.broker_pids, "harness": os.getpid()})
        meter.start()
        load = load_records(s, s.topic_input, records, say=self.say)
        self.loaded += len(records)
        drained_at = self.wait_drained(
            started=load.started_at, timeout=timeout, on_progress=on_progress
        )
        cpu = meter.stop()
        rss = [peak_rss_bytes(pid) for pid in self.pids]
        result = ThroughputResult(
            workers=self.n_workers,
            events=len(records),
            seconds=drained_at - load.started_at,
            load_seconds=load.seconds,
            worker_pids=self.pids,
            peak_rss_bytes=rss,
            cpu_s=cpu,
        )
        result.counts = self.output_counts()
        result.input_end_offsets = end_offsets(s, s.topic_input)
        return result

    def output_counts(self) -> dict[str, int]:
        """Records on each topic of this measurement (fresh topics: the sums of end offsets)."""
        s = self.settings
        roles = {
            "input": s.topic_input,
            "valid": s.topic_valid,
            "dead_letters": s.topic_dlq,
            "predictions": s.topic_predictions,
            "drift_signals": s.topic_drift,
            "snapshot_records": s.topic_snapshots,
        }
        counts = {role: topic_record_count(s, topic) for role, topic in roles.items()}
        counts["duplicates_dropped"] = counts["input"] - counts["valid"] - counts["dead_letters"]
        return counts
