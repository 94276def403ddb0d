"""``streamproc evaluate --kafka``: the quality targets on a full run through Kafka.

Publishes the evaluation's simulated stream (the same seed and sizes as the in-process
evaluation) to fresh topics of its own, runs worker processes until they have processed all
of it, and measures the scores they served on the predictions topic
(:func:`streamproc.learning.served.served_quality`). The run's topics are deleted afterwards
unless asked to keep them.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from streamproc.config import Settings, prefixed
from streamproc.errors import KafkaError, StreamprocError
from streamproc.kafka.clients import wait_for_broker
from streamproc.kafka.lag import consumer_lag
from streamproc.kafka.topics import delete_topics, ensure_topics
from streamproc.learning.evaluate import EvaluationParams
from streamproc.learning.served import ServedQuality, served_quality
from streamproc.produce import EventProducer
from streamproc.simulate import SimParams, simulate_events
from streamproc.workers import WorkerProcess

__all__ = ["evaluate_through_kafka"]

#: Seconds between two progress lines while the workers catch up.
PROGRESS_EVERY_S = 15.0


def _wait_processed(
    settings: Settings,
    workers: list[WorkerProcess],
    timeout: float,
    say: Callable[[str], None],
) -> float:
    """Wait until the group has no lag on the input and valid topics; the seconds it took."""
    started = last = time.monotonic()
    topics = [settings.topic_input, settings.topic_valid]
    while True:
        for worker in workers:
            if not worker.alive():
                raise StreamprocError(
                    f"worker {worker.pid} exited ({worker.log_path}):\n{worker.log_tail()}"
                )
        try:
            rows = consumer_lag(settings, settings.app_id, topics=topics, with_seconds=False)
        except KafkaError:
            rows = []  # e.g. the group coordinator is still loading: ask again
        behind = sum(r.lag for r in rows)
        now = time.monotonic()
        if rows and behind == 0:
            return now - started
        if now - last >= PROGRESS_EVERY_S:
            say(f"workers {behind:,} records behind ({now - started:.0f} s)")
            last = now
        if now - started > timeout:
            raise StreamprocError(
                f"the workers are still {behind:,} records behind after {timeout:.0f} s; "
                f"their logs: {', '.join(str(w.log_path) for w in workers)}"
            )
        time.sleep(1.0)


def evaluate_through_kafka(
    params: EvaluationParams,
    settings: Settings,
    *,
    workers: int = 1,
    log_dir: Path,
    keep_topics: bool = False,
    timeout_s: float | None = None,
    say: Callable[[str], None] | None = None,
) -> ServedQuality:
    """Publish the evaluation stream, let ``workers`` process it, measure what they served.

    Parameters
    ----------
    params
        Sizes, seed, warm-up and targets (as for the in-process evaluation); its
        ``partitions`` is the number of partitions of the run's topics.
    settings
        The cluster and the model settings; topics and the consumer group of the run get a
        fresh ``evaluate-<id>`` prefix. A snapshot key is generated when none is set.
    log_dir
        The workers' logs.
    timeout_s
        Longest wait for the workers to finish (default: 300 s + 2 ms per event).

    Raises
    ------
    StreamprocError
        When the cluster cannot be reached, a worker dies or the workers do not finish.
    """
    tell = say or (lambda _m: None)
    prefix = f"evaluate-{uuid.uuid4().hex[:8]}"
    run = prefixed(
        settings,
        prefix,
        agents="ingest,model",
        metrics_port=0,
        partitions=params.partitions,
        seed=params.seed,
        snapshot_keys=settings.snapshot_keys or SecretStr(f"evaluate:{secrets.token_hex(32)}"),
    )
    wait_for_broker(run, timeout=30.0)
    try:
        return _run(run, params, prefix, workers, log_dir, timeout_s, tell)
    finally:
        if not keep_topics:
            delete_topics(run, prefix)


def _run(
    run: Settings,
    params: EvaluationParams,
    prefix: str,
    workers: int,
    log_dir: Path,
    timeout_s: float | None,
    tell: Callable[[str], None],
) -> ServedQuality:
    ensure_topics(run)
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[WorkerProcess] = []
    try:
        for i in range(1, workers + 1):
            procs.append(WorkerProcess(run, log_dir / f"{prefix}-{i}.log").start())
        simulation = simulate_events(
            SimParams(
                n_events=params.n_events,
                n_users=params.n_users,
                n_titles=params.n_titles,
                seed=params.seed,
                fmt="avro",
            ),
            run,
        )
        tell(f"publishing {params.n_events:,} simulated events to {run.topic_input}")
        published = 0
        with EventProducer(run) as producer:
            for record in simulation:
                producer.send_raw(record.key, record.value)
                published += 1
                if published % 100_000 == 0:
                    tell(f"published {published:,}")
            left = producer.flush(120.0)
        if left:
            raise StreamprocError(f"{left} input records were not acknowledged by Kafka")
        took = _wait_processed(run, procs, timeout_s or 300.0 + params.n_events / 500.0, tell)
        tell(f"{published:,} records processed {took:.0f} s after the last was published")
    finally:
        for proc in procs:
            proc.stop(60.0)
    return served_quality(run, params, list(simulation.manifest.sessions), progress=tell)
