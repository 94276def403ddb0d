"""``streamproc evaluate --kafka``: the quality targets on a full run through Kafka.

Publishes the evaluation's simulated stream (the same seed and sizes as the in-process
evaluation) to fresh topics of its own, runs worker processes until they have processed all
of it, and measures the scores they served on the predictions topic
(:func:`streamproc.learning.served.served_quality`). The run's topics are deleted afterwards
unless asked to keep them.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from streamproc.config import Settings, prefixed
from streamproc.errors import StreamprocError
from streamproc.kafka.clients import wait_for_broker
from streamproc.kafka.topics import delete_topics, ensure_topics
from streamproc.learning.evaluate import EvaluationParams
from streamproc.learning.served import ServedQuality, served_quality
from streamproc.produce import EventProducer
from streamproc.simulate import simulate_events
from streamproc.workers import WorkerProcess, wait_for_catch_up

__all__ = ["evaluate_through_kafka"]


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
        simulation = simulate_events(params.sim_params(fmt="avro"), run)
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
        took = wait_for_catch_up(
            run,
            [run.topic_input, run.topic_valid],
            timeout=timeout_s or 300.0 + params.n_events / 500.0,
            workers=procs,
            progress=lambda behind, waited: tell(
                f"workers {behind:,} records behind ({waited:.0f} s)"
            ),
        )
        tell(f"{published:,} records processed {took:.0f} s after the last was published")
    finally:
        for proc in procs:
            proc.stop(60.0)
    return served_quality(run, params, list(simulation.manifest.sessions), progress=tell)
