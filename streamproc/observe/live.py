"""The demo's live view: what flows through the topics now, drawn about twice a second.

A :class:`LivePoller` thread gathers a :class:`LiveSnapshot` about once a second from three
sources, so the view keeps working when one of them is not there yet:

- the cluster: the end offsets of the input, valid, dead-letter and predictions topics (counts
  and rates, minus the offsets the topics had when the demo started) and the consumer lag of
  the workers' group;
- the dead-letter topic itself, tailed from the demo's start, for dead letters by reason;
- the drift-signals topic, tailed from the demo's start: each detection and lifecycle action
  (challenger started, promoted, rolled back, an operator's manual promote or rollback) as it
  arrives (:class:`DriftEvent`);
- each worker's ``/status.json`` (:mod:`streamproc.observe.server`), for duplicates, model
  quality (over the whole run and over the recent window), the version each partition serves
  and the drift signal count.

The rest of the module is pure formatting (:func:`summarise_status`, :func:`render_view`,
:func:`format_status_line`, :func:`format_drift_line`), tested without a broker. The view
fits a 100-column terminal; when stdout is not a terminal the demo prints plain lines
instead (a status line every few seconds and one line per drift signal).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from streamproc.config import Settings
from streamproc.emit.decode_any import decode_record
from streamproc.errors import StreamprocError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import client_config, quiet_client_logger
from streamproc.kafka.lag import consumer_lag

__all__ = [
    "DRIFT_ROWS",
    "QUALITY_SHOWN",
    "ROLES",
    "DriftEvent",
    "LivePoller",
    "LiveSnapshot",
    "WorkerFigures",
    "drift_table",
    "end_offsets",
    "format_action",
    "format_count",
    "format_drift_line",
    "format_duplicates",
    "format_quality",
    "format_recent_quality",
    "format_served",
    "format_status_line",
    "partition_end_offsets",
    "render_view",
    "summarise_status",
    "top_reasons",
]

logger = logging.getLogger(__name__)

#: Topic roles the view counts, in flow order.
ROLES = ("input", "valid", "dlq", "predictions")
#: (model, metric, label) of the model-quality figures shown.
QUALITY_SHOWN = (
    ("engagement", "roc_auc", "engagement ROC AUC"),
    ("qoe", "mae", "qoe MAE"),
    ("affinity", "rmse", "affinity RMSE"),
)
#: Drift signals the live screen lists (the newest; the count of older ones is shown).
DRIFT_ROWS = 8
#: Rates are computed over this many seconds of snapshots.
_RATE_WINDOW_S = 5.0
_HTTP_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """What the workers' ``/status.json`` documents say, over the workers that answered."""

    answering: int = 0
    expected: int = 0
    dead_letters: dict[str, float] = field(default_factory=dict)
    duplicates: float = 0.0
    predictions: dict[str, float] = field(default_factory=dict)
    quality: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, metric)
    drift_signals: float = 0.0
    served: dict[str, dict[int, int]] = field(default_factory=dict)  # model -> partition -> v
    # (model, metric, version) -> the recent window's figure of that version
    recent: dict[tuple[str, str, int], float] = field(default_factory=dict)


def _version_rank(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def summarise_status(docs: Sequence[Mapping[str, Any] | None]) -> WorkerFigures:
    """Add up the ``/status.json`` documents of the workers (``None``: did not answer).

    Counters are summed; a model-quality figure is the mean over the workers that report it,
    for the newest model version, over the whole run (``window="all"``) when reported, else the
    recent window. ``served`` is the version each partition serves (``model_versions``), and
    ``recent`` the recent-window figure of each version, averaged over the workers.

    Examples
    --------
    >>> doc = {"duplicates": 3.0, "dead_letters": {"decode_error": 2.0},
    ...        "model_quality": [{"model": "qoe", "version": "1", "metric": "mae",
    ...                           "window": "all", "value": 0.5}]}
    >>> figures = summarise_status([doc, None])
    >>> figures.answering, figures.expected, figures.duplicates, figures.quality
    (1, 2, 3.0, {('qoe', 'mae'): 0.5})
    """
    dead: dict[str, float] = {}
    predictions: dict[str, float] = {}
    duplicates = drift = 0.0
    quality: dict[tuple[str, str], list[float]] = {}
    recent: dict[tuple[str, str, int], list[float]] = {}
    served: dict[str, dict[int, int]] = {}
    answering = 0
    for doc in docs:
        if doc is None:
            continue
        answering += 1
        duplicates += float(doc.get("duplicates") or 0.0)
        for reason, n in (doc.get("dead_letters") or {}).items():
            dead[str(reason)] = dead.get(str(reason), 0.0) + float(n)
        for model, n in (doc.get("predictions") or {}).items():
            predictions[str(model)] = predictions.get(str(model), 0.0) + float(n)
        drift += sum(float(s.get("count") or 0.0) for s in doc.get("drift_signals") or [])
        best: dict[tuple[str, str], tuple[tuple[int, str], int, float]] = {}
        for q in doc.get("model_quality") or []:
            if q.get("value") is None:
                continue
            key = (str(q["model"]), str(q["metric"]))
            rank = (_version_rank(str(q.get("version", ""))), int(q.get("window") == "all"))
            if key not in best or rank > best[key][:2]:
                best[key] = (*rank, float(q["value"]))
            if q.get("window") == "recent" and str(q.get("version", "")).isdigit():
                rkey = (str(q["model"]), str(q["metric"]), int(q["version"]))
                recent.setdefault(rkey, []).append(float(q["value"]))
        for key, (_, _, value) in best.items():
            quality.setdefault(key, []).append(value)
        for row in doc.get("model_versions") or []:
            try:
                model, partition, version = str(row["model"]), int(row["partition"]), row["version"]
                served.setdefault(model, {})[partition] = int(version)
            except (KeyError, TypeError, ValueError):
                continue
    return WorkerFigures(
        answering=answering,
        expected=len(docs),
        dead_letters=dead,
        duplicates=duplicates,
        predictions=predictions,
        quality={k: sum(v) / len(v) for k, v in quality.items()},
        drift_signals=drift,
        served=served,
        recent={k: sum(v) / len(v) for k, v in recent.items()},
    )


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """A DriftSignal read from the drift-signals topic, and when the view saw it."""

    seen_s: float  # seconds since the demo started
    signal: dict[str, Any]

    @property
    def what(self) -> str:
        """``kind/detector[/feature]``, e.g. ``data/psi/rtt_ms`` or ``lifecycle/response``."""
        s = self.signal
        return f"{s.get('kind')}/{s.get('detector')}" + (
            f"/{s['feature']}" if s.get("feature") else ""
        )


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """One moment of the demo, as the view draws it."""

    taken_at: float  # time.monotonic()
    elapsed_s: float
    phase: str  # e.g. "publishing", "catching up"
    published: int  # records the demo's publisher has queued
    counts: dict[str, int]  # role -> records on the topic since the demo started
    rates: dict[str, float]  # role -> records a second over the last few seconds
    lag: dict[str, int | None]  # role -> records the group is behind (None: unknown)
    dead_by_reason: dict[str, int]  # from the dead-letter topic
    workers: WorkerFigures
    urls: tuple[str, ...]  # each worker's base URL
    model_running: bool = True
    drift: tuple[DriftEvent, ...] = ()  # the run's drift signals so far, in arrival order


def format_count(value: float | None) -> str:
    """A count with thousands separators, or ``-`` when unknown.

    >>> format_count(12345.0), format_count(None)
    ('12,345', '-')
    """
    return "-" if value is None else f"{value:,.0f}"


def top_reasons(by_reason: Mapping[str, float], n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` most frequent reasons, most frequent first, ties by name.

    >>> top_reasons({"b": 2, "a": 2, "c": 5}, 2)
    [('c', 5), ('a', 2)]
    """
    return sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def format_quality(figures: WorkerFigures, *, model_running: bool = True) -> str:
    """The model-quality figures on one line, or why there are none.

    >>> format_quality(WorkerFigures(answering=1, quality={("qoe", "mae"): 0.01234}))
    'engagement ROC AUC warming up · qoe MAE 0.0123 · affinity RMSE warming up'
    >>> format_quality(WorkerFigures(answering=1))
    'warming up'
    """
    if not model_running:
        return "model agent not running"
    if not figures.answering:
        return "no worker status yet"
    if not any((m, k) in figures.quality for m, k, _ in QUALITY_SHOWN):
        return "warming up"
    parts = []
    for model, metric, label in QUALITY_SHOWN:
        value = figures.quality.get((model, metric))
        parts.append(f"{label} {'warming up' if value is None else f'{value:.4f}'}")
    return " · ".join(parts)


def format_served(figures: WorkerFigures) -> str:
    """The version each model serves, per partition when they differ.

    >>> format_served(WorkerFigures(served={"qoe": {0: 2, 1: 1}, "engagement": {0: 1, 1: 1}}))
    'engagement v1 · qoe v2 p0, v1 p1'
    >>> format_served(WorkerFigures())
    '-'
    """
    parts = []
    for model in sorted(figures.served, key=_model_order):
        by_partition = figures.served[model]
        versions = set(by_partition.values())
        if len(versions) == 1:
            parts.append(f"{model} v{versions.pop()}")
        else:
            parts.append(
                f"{model} " + ", ".join(f"v{v} p{p}" for p, v in sorted(by_partition.items()))
            )
    return " · ".join(parts) or "-"


def _model_order(model: str) -> tuple[int, str]:
    shown = [m for m, _, _ in QUALITY_SHOWN]
    return (shown.index(model) if model in shown else len(shown), model)


def format_recent_quality(figures: WorkerFigures) -> str:
    """The recent-window quality of the versions being served, per model.

    A version no partition serves any more is left out (its gauge keeps its last value).

    >>> figures = WorkerFigures(served={"qoe": {0: 2, 1: 1}},
    ...                         recent={("qoe", "mae", 1): 0.0141, ("qoe", "mae", 2): 0.0102})
    >>> format_recent_quality(figures)
    'qoe MAE v1 0.0141, v2 0.0102'
    """
    parts = []
    for model, metric, label in QUALITY_SHOWN:
        serving = set(figures.served.get(model, {}).values())
        values = sorted(
            (v, value)
            for (m, k, v), value in figures.recent.items()
            if m == model and k == metric and (not serving or v in serving)
        )
        if values:
            parts.append(f"{label} " + ", ".join(f"v{v} {value:.4f}" for v, value in values))
    return " · ".join(parts) or "warming up"


def format_action(signal: Mapping[str, Any]) -> str:
    """What a drift signal did: ``-`` for a detection alone, else its action or event.

    >>> format_action({"action": "none", "kind": "label"})
    '-'
    >>> format_action({"action": "none", "kind": "lifecycle",
    ...                "details": {"event": "challenger_retired"}})
    'challenger_retired'
    >>> format_action({"action": "promoted", "kind": "lifecycle"})
    'promoted'
    """
    action = str(signal.get("action") or "none")
    if action != "none":
        return action
    details = signal.get("details")
    event = details.get("event") if isinstance(details, Mapping) else None
    return str(event) if event else "-"


def format_drift_line(event: DriftEvent) -> str:
    """One drift signal as a plain line (when stdout is not a terminal).

    >>> format_drift_line(DriftEvent(41.2, {"partition": 0, "model": "qoe", "model_version": 1,
    ...     "kind": "label", "detector": "adwin", "feature": None, "severity": "drift",
    ...     "action": "none", "input_offset": 22233}))
    '[41s] drift signal p0 qoe v1: label/adwin drift, action -, valid offset 22,233'
    """
    s = event.signal
    partition = s.get("partition")
    where = "all partitions" if partition is None else f"p{partition}"
    offset = s.get("input_offset")
    return (
        f"[{event.seen_s:.0f}s] drift signal {where} {s.get('model')} v{s.get('model_version')}: "
        f"{event.what} {s.get('severity')}, action {format_action(s)}"
        + ("" if offset is None else f", valid offset {offset:,}")
    )


_ACTION_STYLE = {
    "challenger_started": "yellow",
    "promoted": "bold green",
    "rolled_back": "bold red",
    "manual_promote": "bold green",
    "manual_rollback": "bold red",
}


def drift_table(events: Sequence[DriftEvent], rows: int = DRIFT_ROWS) -> RenderableType:
    """The newest ``rows`` drift signals: when seen, partition, model, what, action, version."""
    table = Table(box=None, pad_edge=False, expand=False)
    table.add_column("seen", justify="right")
    for name in ("part", "model", "signal", "action"):
        table.add_column(name)
    table.add_column("version")
    shown = list(events)[-rows:]
    for event in shown:
        s = event.signal
        action = format_action(s)
        style = _ACTION_STYLE.get(action, "cyan" if s.get("kind") != "lifecycle" else "")
        partition = s.get("partition")
        table.add_row(
            f"{event.seen_s:.0f}s",
            "all" if partition is None else f"p{partition}",
            str(s.get("model")),
            event.what,
            f"[{style}]{action}[/]" if style else action,
            f"v{s.get('model_version')}",
        )
    older = len(events) - len(shown)
    if older:
        return Group(f"[dim]{older} earlier signal(s) not shown[/]", table)
    return table


def format_duplicates(snap: LiveSnapshot) -> str:
    """Duplicates dropped: the workers' count, else ``~`` an estimate from the topics.

    The estimate is input records processed (written minus the group's lag) minus valid
    records minus dead letters; it is exact once the group has caught up.

    >>> snap = LiveSnapshot(0.0, 1.0, "", 0, {"input": 110, "valid": 90, "dlq": 5},
    ...                     {}, {"input": 10}, {}, WorkerFigures(), ())
    >>> format_duplicates(snap)
    '~5'
    """
    if snap.workers.answering:
        return format_count(snap.workers.duplicates)
    c, lag = snap.counts, snap.lag.get("input")
    if lag is None or not {"input", "valid", "dlq"} <= c.keys():
        return "-"
    return f"~{max(0, c['input'] - lag - c['valid'] - c['dlq']):,}"


def _lag(value: int | None) -> str:
    return format_count(value)


def format_status_line(snap: LiveSnapshot) -> str:
    """The compact one-line status printed every few seconds when stdout is not a terminal.

    Examples
    --------
    >>> snap = LiveSnapshot(0.0, 12.0, "publishing", 100, {"input": 100, "valid": 90, "dlq": 5,
    ...     "predictions": 30}, {"input": 50.0}, {"input": 4, "valid": None}, {"decode_error": 5},
    ...     WorkerFigures(), ())
    >>> format_status_line(snap)  # doctest: +NORMALIZE_WHITESPACE
    '[12s] publishing: in 100 (50/s) valid 90 (0/s) dead 5 dup ~1 predictions 30 (0/s)
     lag in=4 valid=- | no worker status yet'
    """
    c, r = snap.counts, snap.rates
    return (
        f"[{snap.elapsed_s:.0f}s] {snap.phase}: "
        f"in {format_count(c.get('input'))} ({r.get('input', 0.0):,.0f}/s) "
        f"valid {format_count(c.get('valid'))} ({r.get('valid', 0.0):,.0f}/s) "
        f"dead {format_count(c.get('dlq'))} dup {format_duplicates(snap)} "
        f"predictions {format_count(c.get('predictions'))} ({r.get('predictions', 0.0):,.0f}/s) "
        f"lag in={_lag(snap.lag.get('input'))} valid={_lag(snap.lag.get('valid'))} | "
        + format_quality(snap.workers, model_running=snap.model_running)
    )


def render_view(
    snap: LiveSnapshot, topics: Mapping[str, str], *, drift_rows: int = DRIFT_ROWS
) -> RenderableType:
    """The live screen: flow per topic, dead letters, duplicates, models, endpoints, and the
    newest ``drift_rows`` drift signals."""
    flow = Table(box=None, pad_edge=False, expand=False)
    flow.add_column("topic")
    flow.add_column("records", justify="right")
    flow.add_column("per s", justify="right")
    flow.add_column("lag", justify="right")
    labels = {"input": "in", "valid": "out", "dlq": "dead letters", "predictions": "out"}
    for role in ROLES:
        lag = _lag(snap.lag.get(role)) if role in snap.lag else ""
        flow.add_row(
            f"{topics[role]} [dim]({labels[role]})[/]",
            format_count(snap.counts.get(role)),
            f"{snap.rates.get(role, 0.0):,.0f}",
            lag,
        )
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    reasons = top_reasons(snap.dead_by_reason)
    facts.add_row(
        "dead letters",
        " · ".join(f"{k} {format_count(v)}" for k, v in reasons) if reasons else "none yet",
    )
    facts.add_row("duplicates", format_duplicates(snap))
    predicted = format_count(snap.counts.get("predictions"))
    facts.add_row("predictions", predicted if snap.model_running else "model agent not running")
    facts.add_row("model quality", format_quality(snap.workers, model_running=snap.model_running))
    if snap.model_running:
        facts.add_row("recent quality", format_recent_quality(snap.workers))
        facts.add_row("serving", format_served(snap.workers))
    signals = len(snap.drift) or snap.workers.drift_signals
    facts.add_row("drift signals", format_count(signals) if signals else "none yet")
    answering = f"{snap.workers.answering}/{snap.workers.expected} answering"
    facts.add_row("workers", answering)
    for url in snap.urls:
        facts.add_row("", f"{url}/status  {url}/metrics")
    parts: list[RenderableType] = [flow, "", facts]
    if snap.drift:
        parts += ["", drift_table(snap.drift, drift_rows)]
    title = f"streamproc demo · {snap.phase} · {snap.elapsed_s:.0f} s"
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


# --- gathering -------------------------------------------------------------------------------


def end_offsets(
    settings: Settings, topics: Sequence[str], *, timeout: float = 10.0
) -> dict[str, int]:
    """Sum over partitions of each topic's end offset (records ever written, for a delete topic).

    Raises
    ------
    StreamprocError
        If a topic does not exist or the broker does not answer within ``timeout`` s.
    """
    ends = partition_end_offsets(settings, topics, timeout=timeout)
    return {topic: sum(ends[topic].values()) for topic in topics}


def partition_end_offsets(
    settings: Settings, topics: Sequence[str], *, timeout: float = 10.0
) -> dict[str, dict[int, int]]:
    """Topic -> partition -> end offset.

    Raises
    ------
    StreamprocError
        If a topic does not exist or the broker does not answer within ``timeout`` s.
    """
    admin = AdminClient(client_config(settings, logger=quiet_client_logger()))
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _end_offsets(admin, settings, topics, timeout)
        except KafkaException as exc:
            # Just after a topic is created its leader may not be known everywhere yet
            # (NOT_LEADER_FOR_PARTITION, not flagged retriable): ask again until the deadline.
            if time.monotonic() > deadline:
                raise StreamprocError(
                    f"cannot read the end offsets of {', '.join(topics)} at "
                    f"{settings.bootstrap_servers}: {exc}"
                ) from exc
            time.sleep(0.2)


def _end_offsets(
    admin: AdminClient, settings: Settings, topics: Sequence[str], timeout: float
) -> dict[str, dict[int, int]]:
    metadata = admin.list_topics(timeout=timeout)
    specs = {}
    for topic in topics:
        tmeta = metadata.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            raise StreamprocError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}")
        specs.update({TopicPartition(topic, p): OffsetSpec.latest() for p in tmeta.partitions})
    ends: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    for tp, future in admin.list_offsets(specs, request_timeout=timeout).items():
        ends[tp.topic][tp.partition] = future.result().offset
    return ends


def _fetch_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


class LivePoller:
    """Gather a :class:`LiveSnapshot` every ``interval_s`` seconds in a daemon thread.

    Parameters
    ----------
    settings
        The cluster, the topics and the group (``app_id``) to watch.
    baseline
        Topic -> summed end offset when the demo started; counts are relative to it.
    urls
        Base URL of each worker's status server.
    lag_roles
        The roles whose consumer lag is measured (the topics the workers consume).
    model_running
        Whether the workers run the model agent (else the view says so).
    interval_s
        Seconds between polls.
    """

    def __init__(
        self,
        settings: Settings,
        baseline: Mapping[str, int],
        urls: Sequence[str],
        *,
        lag_roles: Sequence[str] = ("input", "valid"),
        model_running: bool = True,
        interval_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.baseline = dict(baseline)
        self.urls = tuple(urls)
        self.lag_roles = tuple(lag_roles)
        self.model_running = model_running
        self.interval_s = interval_s
        self.phase = "starting"
        self.published = 0
        self._started = time.monotonic()
        self._history: deque[tuple[float, dict[str, int]]] = deque()
        self._dead: Counter[str] = Counter()
        self._dlq: Consumer | None = None
        self._drift_tail: Consumer | None = None
        self._drift: list[DriftEvent] = []
        self._schemas = load_schemas(settings.schemas_path)
        self._lock = threading.Lock()
        self._tail_lock = threading.Lock()
        self._latest: LiveSnapshot | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamproc-demo-view", daemon=True)

    def start(self) -> LivePoller:
        """Start tailing the dead-letter (and drift-signals) topic at its end, then poll."""
        self._dlq = self._open_tail(self.settings.topic_dlq, "dead-letter")
        if self.model_running:
            self._drift_tail = self._open_tail(self.settings.topic_drift, "drift-signals")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        for consumer in (self._dlq, self._drift_tail):
            if consumer is not None:
                consumer.close()
        self._dlq = self._drift_tail = None

    @property
    def latest(self) -> LiveSnapshot:
        """The newest snapshot (an empty one before the first poll)."""
        with self._lock:
            if self._latest is not None:
                return self._latest
        return self._empty()

    def _empty(self) -> LiveSnapshot:
        return LiveSnapshot(
            time.monotonic(),
            time.monotonic() - self._started,
            self.phase,
            self.published,
            {},
            {},
            {},
            {},
            WorkerFigures(expected=len(self.urls)),
            self.urls,
            self.model_running,
            tuple(self._drift),
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll()
            except Exception:  # a missed frame is not worth a dead view: try again
                logger.debug("live view: poll failed", exc_info=True)
            self._stopping.wait(self.interval_s)

    def poll(self) -> LiveSnapshot:
        """Gather one snapshot now (the thread calls it; the demo calls it once at the end)."""
        topics = self.settings.topics
        now = time.monotonic()
        ends = end_offsets(self.settings, [topics[r] for r in ROLES])
        counts = {r: ends[topics[r]] - self.baseline.get(topics[r], 0) for r in ROLES}
        self._history.append((now, counts))
        while len(self._history) > 2 and self._history[1][0] <= now - _RATE_WINDOW_S:
            self._history.popleft()
        t0, first = self._history[0]
        dt = now - t0
        rates = {r: (counts[r] - first[r]) / dt if dt > 0 else 0.0 for r in ROLES}
        lag: dict[str, int | None] = dict.fromkeys(self.lag_roles)
        try:
            rows = consumer_lag(
                self.settings,
                self.settings.app_id,
                topics=[topics[r] for r in self.lag_roles],
                with_seconds=False,
                timeout=5.0,
            )
            by_topic: Counter[str] = Counter()
            for row in rows:
                by_topic[row.topic] += row.lag
            lag = {r: by_topic.get(topics[r], 0) for r in self.lag_roles}
        except StreamprocError:
            pass
        with self._tail_lock:  # the demo polls once more itself at the end
            self._tail_dlq()
            self._tail_drift(now - self._started)
        docs = [_fetch_json(f"{url}/status.json") for url in self.urls]
        snap = LiveSnapshot(
            now,
            now - self._started,
            self.phase,
            self.published,
            counts,
            rates,
            lag,
            dict(self._dead),
            summarise_status(docs),
            self.urls,
            self.model_running,
            tuple(self._drift),
        )
        with self._lock:
            self._latest = snap
        return snap

    def _open_tail(self, topic: str, what: str) -> Consumer:
        """A consumer of ``topic`` assigned at the end of each partition (no group offsets)."""
        consumer = Consumer(
            client_config(
                self.settings, **{"group.id": "streamproc-demo-view", "enable.auto.commit": False}
            ),
            logger=quiet_client_logger(),
        )
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10.0).topics[topic].partitions)
            ends = [
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10.0)[1]
                for p in partitions
            ]
        except (KafkaException, KeyError) as exc:
            consumer.close()
            raise StreamprocError(
                f"cannot tail the {what} topic {topic!r} at "
                f"{self.settings.bootstrap_servers}: {exc}"
            ) from exc
        consumer.assign(
            [TopicPartition(topic, p, end) for p, end in zip(partitions, ends, strict=True)]
        )
        return consumer

    def _decoded(self, consumer: Consumer, max_records: int) -> Iterator[dict[str, Any]]:
        """The records one poll of ``consumer`` returns, decoded (undecodable ones skipped)."""
        for msg in consumer.consume(max_records, 0.2):
            if msg.error() is not None:
                continue
            try:
                _, record = decode_record(msg.value() or b"", self._schemas)
            except StreamprocError:
                continue
            yield record

    def _tail_dlq(self) -> None:
        """Count the reasons of the dead letters written since the poller started."""
        if self._dlq is None:
            return
        for letter in self._decoded(self._dlq, 5000):
            self._dead[str(letter.get("reason"))] += 1

    def _tail_drift(self, seen_s: float) -> None:
        """Keep the drift signals written since the poller started, in arrival order."""
        if self._drift_tail is None:
            return
        for signal in self._decoded(self._drift_tail, 1000):
            self._drift.append(DriftEvent(seen_s, signal))
