"""Every Prometheus metric of streamproc, in one place, on one injected registry.

:meth:`StreamprocMetrics.create` builds the whole set on a :class:`CollectorRegistry`: the
worker passes the default registry (or its own), tests pass a fresh one each. Nothing in the
library registers a metric anywhere else, so :data:`METRIC_NAMES` is the complete list of the
families Prometheus sees; the alert rules and the Grafana dashboard are checked against it.

Conventions (STYLE.md, section 2): a ``streamproc_`` prefix, ``_total`` on counters, base
units in the name (``_seconds``, ``_records``), and low-cardinality labels only. A label is
one of a small, bounded set (topic, partition, reason, model, version, metric, window, stage,
kind, group); never a user, session or event id.

Histogram families (``_seconds``) are exported as ``<name>_bucket``, ``<name>_sum`` and
``<name>_count``; counters as ``<name>`` (already ending in ``_total``) plus prometheus-client's
``<name minus _total>_created``. :func:`metric_family` maps any such series name back to its
family.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from streamproc import __version__

__all__ = [
    "COUNTER_NAMES",
    "FORBIDDEN_LABELS",
    "GAUGE_NAMES",
    "HISTOGRAM_NAMES",
    "LATENCY_BUCKETS",
    "METRIC_NAMES",
    "QUALITY_METRICS",
    "QUALITY_WINDOWS",
    "StreamprocMetrics",
    "metric_family",
]

#: Label names that would make a series per user, session or event: never allowed.
FORBIDDEN_LABELS = frozenset({"user_id", "event_id", "session_id", "content_id", "device_id"})

#: Values of the ``metric`` label of ``streamproc_model_quality``.
QUALITY_METRICS = ("roc_auc", "log_loss", "mae", "rmse")
#: Values of its ``window`` label: since the model's start, or over the recent window.
QUALITY_WINDOWS = ("all", "recent")

#: Seconds; from a millisecond (one record through one stage) to ten minutes (a backlog).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

#: Young collections take well under a millisecond; full ones grow with the live objects.
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

COUNTER_NAMES = (
    "streamproc_records_in_total",
    "streamproc_records_out_total",
    "streamproc_dead_letters_total",
    "streamproc_duplicates_total",
    "streamproc_predictions_total",
    "streamproc_labels_resolved_total",
    "streamproc_drift_signals_total",
    "streamproc_snapshots_written_total",
    "streamproc_snapshots_refused_total",
    "streamproc_snapshots_failed_total",
    "streamproc_rebalances_total",
    "streamproc_lag_check_failures_total",
)
GAUGE_NAMES = (
    "streamproc_model_quality",
    "streamproc_model_version",
    "streamproc_consumer_lag_records",
    "streamproc_consumer_lag_seconds",
    "streamproc_partition_stalled",
    "streamproc_assigned_partitions",
    "streamproc_worker_up",
    "streamproc_build_info",
    "streamproc_lag_check_timestamp_seconds",
)
HISTOGRAM_NAMES = (
    "streamproc_stage_seconds",
    "streamproc_event_to_prediction_seconds",
    "streamproc_process_latency_seconds",
    "streamproc_gc_pause_seconds",
)
#: Every metric family streamproc exports, as PromQL names it (histograms by their base name).
METRIC_NAMES = tuple(sorted(COUNTER_NAMES + GAUGE_NAMES + HISTOGRAM_NAMES))

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_family(series: str) -> str | None:
    """The :data:`METRIC_NAMES` family a series name belongs to, or ``None``.

    >>> metric_family("streamproc_stage_seconds_bucket")
    'streamproc_stage_seconds'
    >>> metric_family("streamproc_dead_letters_created")
    'streamproc_dead_letters_total'
    >>> metric_family("streamproc_no_such_thing") is None
    True
    """
    if series in METRIC_NAMES:
        return series
    for suffix in _HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and base in HISTOGRAM_NAMES:
            return base
    if series.endswith("_created"):
        counter = series.removesuffix("_created") + "_total"
        if counter in COUNTER_NAMES:
            return counter
        if series.removesuffix("_created") in HISTOGRAM_NAMES:
            return series.removesuffix("_created")
    return None


@dataclass(frozen=True, slots=True)
class StreamprocMetrics:
    """The metric objects, by role; build it with :meth:`create`.

    The attribute names drop the ``streamproc_`` prefix and the ``_total`` suffix:
    ``metrics.dead_letters.labels(reason="decode_error").inc()``.
    """

    registry: CollectorRegistry
    # --- ingest (DataOps) ------------------------------------------------------------------
    records_in: Counter
    records_out: Counter
    dead_letters: Counter
    duplicates: Counter
    # --- latency ---------------------------------------------------------------------------
    stage_seconds: Histogram
    event_to_prediction_seconds: Histogram
    process_latency_seconds: Histogram
    # --- models (MLOps) --------------------------------------------------------------------
    predictions: Counter
    model_quality: Gauge
    model_version: Gauge
    labels_resolved: Counter
    drift_signals: Counter
    snapshots_written: Counter
    snapshots_refused: Counter
    snapshots_failed: Counter
    # --- consumer and worker ---------------------------------------------------------------
    consumer_lag_records: Gauge
    consumer_lag_seconds: Gauge
    partition_stalled: Gauge
    lag_check_failures: Counter
    lag_check_timestamp: Gauge
    rebalances: Counter
    assigned_partitions: Gauge
    worker_up: Gauge
    build_info: Gauge
    gc_pause_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> StreamprocMetrics:
        """Register every streamproc metric on ``registry`` (default: the global registry).

        Call it once per registry: registering the same names twice raises ``ValueError``
        (prometheus-client's duplicate check), which is what catches a second worker set-up
        in one process.

        Parameters
        ----------
        registry
            Where the metrics live. Tests pass a fresh ``CollectorRegistry()``.

        Returns
        -------
        StreamprocMetrics
            With ``worker_up`` at 0 (the worker sets it to 1 once it runs) and
            ``build_info{version}`` at 1.
        """
        reg = REGISTRY if registry is None else registry
        group_tp = ("group", "topic", "partition")
        metrics = cls(
            registry=reg,
            records_in=Counter(
                "streamproc_records_in_total",
                "Records a worker consumed, by source topic.",
                ["topic"], registry=reg,
            ),
            records_out=Counter(
                "streamproc_records_out_total",
                "Records a worker produced, by destination topic (valid, dlq, predictions, ...).",
                ["topic"], registry=reg,
            ),
            dead_letters=Counter(
                "streamproc_dead_letters_total",
                "Records sent to the dead-letter topic, by reason code (decode_error, "
                "unknown_schema, too_large, rule_violation:<rule>).",
                ["reason"], registry=reg,
            ),
            duplicates=Counter(
                "streamproc_duplicates_total",
                "Records dropped because their event_id was seen within the de-duplication "
                "window.",
                registry=reg,
            ),
            stage_seconds=Histogram(
                "streamproc_stage_seconds",
                "Wall time a batch or record spends in one processing stage, seconds.",
                ["stage"], buckets=LATENCY_BUCKETS, registry=reg,
            ),
            event_to_prediction_seconds=Histogram(
                "streamproc_event_to_prediction_seconds",
                "From the event's event_time to the moment its prediction is emitted, seconds "
                "(includes producer delay and consumer lag).",
                buckets=LATENCY_BUCKETS, registry=reg,
            ),
            process_latency_seconds=Histogram(
                "streamproc_process_latency_seconds",
                "From the record's arrival in the worker to its output being sent, seconds.",
                buckets=LATENCY_BUCKETS, registry=reg,
            ),
            predictions=Counter(
                "streamproc_predictions_total",
                "Predictions emitted, by model.",
                ["model"], registry=reg,
            ),
            model_quality=Gauge(
                "streamproc_model_quality",
                "Prequential (test-then-train) quality of a model version: metric is one of "
                "roc_auc, log_loss, mae, rmse; window is all (since start) or recent.",
                ["model", "version", "metric", "window"], registry=reg,
            ),
            model_version=Gauge(
                "streamproc_model_version",
                "Version of the model serving a partition (increases on promotion or restore).",
                ["model", "partition"], registry=reg,
            ),
            labels_resolved=Counter(
                "streamproc_labels_resolved_total",
                "Labels that arrived and were learned (each also scores the model), by model.",
                ["model"], registry=reg,
            ),
            drift_signals=Counter(
                "streamproc_drift_signals_total",
                "Drift signals emitted, by model and kind (concept, data, warning, ...).",
                ["model", "kind"], registry=reg,
            ),
            snapshots_written=Counter(
                "streamproc_snapshots_written_total",
                "Model snapshots written to the snapshot topic, by model.",
                ["model"], registry=reg,
            ),
            snapshots_refused=Counter(
                "streamproc_snapshots_refused_total",
                "Snapshots refused on restore (bad signature, unknown key, incompatible "
                "version, corrupt), by model and reason.",
                ["model", "reason"], registry=reg,
            ),
            snapshots_failed=Counter(
                "streamproc_snapshots_failed_total",
                "Partition snapshots not written (too_large: a component exceeds the "
                "snapshot topic's max.message.bytes), by reason.",
                ["reason"], registry=reg,
            ),
            consumer_lag_records=Gauge(
                "streamproc_consumer_lag_records",
                "Log-end offset minus committed offset, for the partitions this worker owns.",
                group_tp, registry=reg,
            ),
            consumer_lag_seconds=Gauge(
                "streamproc_consumer_lag_seconds",
                "Age of the oldest unprocessed record of a partition this worker owns, seconds.",
                group_tp, registry=reg,
            ),
            partition_stalled=Gauge(
                "streamproc_partition_stalled",
                "1 while a partition's lag grows and its committed offset has not moved for "
                "stall_after_s seconds; else 0.",
                group_tp, registry=reg,
            ),
            lag_check_failures=Counter(
                "streamproc_lag_check_failures_total",
                "Lag measurements that failed (broker unreachable or an admin request error).",
                registry=reg,
            ),
            lag_check_timestamp=Gauge(
                "streamproc_lag_check_timestamp_seconds",
                "Unix time of the last successful lag measurement, seconds.",
                registry=reg,
            ),
            rebalances=Counter(
                "streamproc_rebalances_total",
                "Consumer group rebalances this worker went through.",
                registry=reg,
            ),
            assigned_partitions=Gauge(
                "streamproc_assigned_partitions",
                "Partitions currently assigned to this worker, by topic.",
                ["topic"], registry=reg,
            ),
            worker_up=Gauge(
                "streamproc_worker_up",
                "1 while the worker runs its agents, 0 while it starts or stops.",
                registry=reg,
            ),
            build_info=Gauge(
                "streamproc_build_info",
                "Always 1; the version label says which streamproc this process runs.",
                ["version"], registry=reg,
            ),
            gc_pause_seconds=Histogram(
                "streamproc_gc_pause_seconds",
                "Python garbage collections of the worker process and how long each held it "
                "(every agent waits meanwhile), seconds, by generation (2 = full).",
                ["generation"], buckets=GC_PAUSE_BUCKETS, registry=reg,
            ),
        )  # fmt: skip
        metrics.build_info.labels(version=__version__).set(1)
        return metrics

    def declare_model(
        self,
        model: str,
        *,
        drift_kinds: Iterable[str] = (),
        refusal_reasons: Iterable[str] = (),
    ) -> None:
        """Create ``model``'s counter series at 0 before anything happens to them.

        A labelled counter has no series until its first increment, and PromQL's
        ``increase()`` cannot see the step from "no series" to 1: without this the first
        drift signal or refused snapshot would never fire an alert. Call it when a model
        starts, with the kinds and reasons it can emit.
        """
        self.predictions.labels(model=model)
        self.labels_resolved.labels(model=model)
        self.snapshots_written.labels(model=model)
        for kind in drift_kinds:
            self.drift_signals.labels(model=model, kind=kind)
        for reason in refusal_reasons:
            self.snapshots_refused.labels(model=model, reason=reason)

    def declare_topics(self, *, consumed: Iterable[str], produced: Iterable[str]) -> None:
        """Create the records in/out series of these topics at 0 (see :meth:`declare_model`)."""
        for topic in consumed:
            self.records_in.labels(topic=topic)
        for topic in produced:
            self.records_out.labels(topic=topic)

    def declare_dead_letter_reasons(self, reasons: Iterable[str]) -> None:
        """Create the dead-letter series of these reasons at 0 (see :meth:`declare_model`)."""
        for reason in reasons:
            self.dead_letters.labels(reason=reason)

    def remove_partition(self, group: str, topic: str, partition: int) -> None:
        """Drop the lag and stall series of a partition this worker no longer owns.

        Without it, a worker would keep exporting the last lag it saw for a partition
        another worker now serves, and the sum over workers would count it twice.
        """
        labels = (group, topic, str(partition))
        for gauge in (self.consumer_lag_records, self.consumer_lag_seconds, self.partition_stalled):
            with contextlib.suppress(KeyError):  # never set on this worker: nothing to remove
                gauge.remove(*labels)
