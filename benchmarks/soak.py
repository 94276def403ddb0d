"""Memory soak: one worker's resident memory (RSS) over N events processed.

``streamproc bench --soak N [--soak-every K]`` answers the target "worker RSS flat (within
10 %) from 200k to 2M events processed". One ``streamproc worker`` (agents ``ingest,model``,
the settings of the environment as in the other measurements) joins fresh topics; a feeder
thread then generates the benchmark's simulated records in chunks (the same simulator, seed
and format as :func:`benchmarks.preload.build_workload`, never all N in memory) and loads each
chunk once fewer than :data:`MAX_IN_FLIGHT` records would be waiting for the worker. Every
:data:`SAMPLE_EVERY_S` seconds the main thread reads the worker's ``VmRSS`` and the events it
has processed through both stages (:func:`finished_events`: the group's committed offsets on
the input topic, less the valid records the model stage has still to score) and records a
:class:`Checkpoint` whenever that count crosses a multiple of K. It ends when all N
are committed on the input topic and the model stage has caught up (lag 0 on the valid
topic), and fails if the worker exits or nothing progresses for :data:`STALL_TIMEOUT_S`.

"Flat" means every checkpoint's RSS is within ±10 % of the first one's (the RSS at K).
A checkpoint is one 2-s sample, and the worker's RSS moves by 20-30 MB for a few seconds at a
time (freed heap memory touched again between two trims); so the report also gives the
**level** of each interval between two checkpoints (:func:`interval_levels`: the median of
its samples) and the largest change of those levels against the first interval's. The
verdict stays the checkpoints'. The bookkeeping, the verdict and the rendering are pure and
tested without a broker.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from pydantic import SecretStr

from benchmarks.harness import (
    BenchOptions,
    Progress,
    _start_kafka,
    _utc,
    count_checks,
    local_broker_pids,
    release_kafka,
)
from benchmarks.pipeline import PipelineSession, measurement_settings
from benchmarks.preload import BenchRecord, bench_simulation, load_records
from benchmarks.report import machine_info, report_header
from benchmarks.resources import current_rss_bytes, peak_rss_bytes
from benchmarks.stats import summarize
from streamproc.config import Settings, secret_fields
from streamproc.errors import KafkaError, StreamprocError
from streamproc.kafka.clients import wait_for_broker
from streamproc.kafka.lag import LagClients, PartitionLag, consumer_lag
from streamproc.kafka.launcher import ClusterInfo
from streamproc.learning.specs import get_model_specs

__all__ = [
    "CHUNK_RECORDS",
    "FLAT_TOLERANCE",
    "MAX_IN_FLIGHT",
    "SAMPLE_EVERY_S",
    "STALL_TIMEOUT_S",
    "Checkpoint",
    "Feeder",
    "SoakTracker",
    "accounting_checks",
    "finished_events",
    "interval_levels",
    "render_checkpoints",
    "render_levels",
    "render_soak",
    "render_soak_markdown",
    "render_summary",
    "run_soak",
    "simulated_chunks",
    "summarize_soak",
]

#: Records generated and loaded at a time.
CHUNK_RECORDS = 50_000
#: At most this many records produced but not yet processed (committed) by the worker.
MAX_IN_FLIGHT = 300_000
#: Seconds between two samples of RSS and progress.
SAMPLE_EVERY_S = 2.0
#: Fail when neither stage has committed anything new for this long.
STALL_TIMEOUT_S = 120.0
#: "Flat": every checkpoint within this fraction of the first checkpoint's RSS.
FLAT_TOLERANCE = 0.10


# -- bookkeeping (pure) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The sample at which the processed count first reached ``mark`` (a multiple of K, or N)."""

    mark: int
    processed: int  # input records processed at that sample (>= mark)
    rss_bytes: int  # VmRSS at that sample
    max_rss_bytes: int  # the largest VmRSS sampled so far
    elapsed_s: float  # since the first record was produced

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SoakTracker:
    """Samples in, checkpoints out: one per multiple of ``every`` up to ``events`` (and N).

    A sample that jumps over several marks records one checkpoint for each, all with that
    sample's figures.

    >>> t = SoakTracker(every=100, events=250)
    >>> t.marks
    [100, 200, 250]
    >>> [c.mark for c in t.observe(120, 5_000_000, 1.0)]
    [100]
    >>> [(c.mark, c.processed) for c in t.observe(250, 4_000_000, 2.0)]
    [(200, 250), (250, 250)]
    >>> t.checkpoints[-1].max_rss_bytes
    5000000
    """

    every: int
    events: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    max_rss_bytes: int = 0
    marks: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.every < 1 or self.events < 1:
            raise ValueError(f"every and events must be >= 1, got {self.every}, {self.events}")
        self.marks = list(range(self.every, self.events + 1, self.every))
        if not self.marks or self.marks[-1] != self.events:
            self.marks.append(self.events)

    @property
    def next_mark(self) -> int | None:
        done = len(self.checkpoints)
        return self.marks[done] if done < len(self.marks) else None

    def observe(
        self, processed: int, rss_bytes: int, elapsed_s: float, **extra: Any
    ) -> list[Checkpoint]:
        """Take one sample; return the checkpoints it completes (none, one or several)."""
        self.max_rss_bytes = max(self.max_rss_bytes, rss_bytes)
        self.samples.append(
            {
                "elapsed_s": round(elapsed_s, 2),
                "processed": processed,
                "rss_bytes": rss_bytes,
                **extra,
            }
        )
        new: list[Checkpoint] = []
        while (mark := self.next_mark) is not None and processed >= mark:
            checkpoint = Checkpoint(mark, processed, rss_bytes, self.max_rss_bytes, elapsed_s)
            self.checkpoints.append(checkpoint)
            new.append(checkpoint)
        return new


def finished_events(ingested: int, valid_lag: int) -> int:
    """Input events through both stages: those the ingest stage has committed, less the
    valid records the model stage has not committed yet (never below 0). A lower bound: the
    valid topic may already hold records of input the ingest stage has not committed yet.

    An event is processed when the worker is done with it, not when its first stage is:
    in a soak the ingest stage runs up to hundreds of thousands of events ahead of the
    model stage, whose state is then still filling at the ingest stage's checkpoint.

    >>> finished_events(200_000, 65_000), finished_events(1_000, 5_000)
    (135000, 0)
    """
    return max(0, ingested - valid_lag)


def interval_levels(
    samples: Sequence[Mapping[str, Any]], every: int, events: int
) -> list[dict[str, Any]]:
    """The RSS level of each interval between two checkpoints, from the first checkpoint on:
    the median, lowest and highest RSS of the samples taken while the processed count was in
    ``[start, end)`` (the last interval ends at ``events`` and includes it). Intervals
    without a sample are left out.

    >>> samples = [{"processed": p, "rss_bytes": r} for p, r in
    ...            [(50, 100), (100, 200), (150, 260), (180, 210), (220, 215), (250, 230)]]
    >>> [(i["start"], i["end"], i["samples"], i["median_rss_bytes"], i["max_rss_bytes"])
    ...  for i in interval_levels(samples, every=100, events=250)]
    [(100, 200, 3, 210.0, 260.0), (200, 250, 2, 222.5, 230.0)]
    """
    bounds = [*range(every, events, every), events]
    if len(bounds) < 2:
        return []
    found: dict[int, list[int]] = {}
    for sample in samples:
        processed = sample["processed"]
        if processed < bounds[0]:
            continue
        index = min((processed - bounds[0]) // every, len(bounds) - 2)
        found.setdefault(index, []).append(sample["rss_bytes"])
    levels = []
    for i in sorted(found):
        rss = summarize(found[i])
        assert rss is not None  # every interval in found has a sample
        levels.append(
            {
                "start": bounds[i],
                "end": bounds[i + 1],
                "samples": rss.runs,
                "median_rss_bytes": rss.median,
                "min_rss_bytes": rss.low,
                "max_rss_bytes": rss.high,
            }
        )
    return levels


def _change(rss: float, first: float) -> float:
    return (rss / first - 1.0) * 100.0 if first else 0.0


def summarize_soak(
    checkpoints: Sequence[Mapping[str, Any]],
    *,
    events: int,
    elapsed_s: float | None,
    peak_rss_bytes: int | None,
    tolerance: float = FLAT_TOLERANCE,
    levels: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """RSS at the first and the last checkpoint, their ratio and the flatness verdict.

    ``flat`` is True when every checkpoint's RSS is within ``tolerance`` of the first one's,
    None when there are fewer than two checkpoints (nothing to compare). With ``levels``
    (:func:`interval_levels`), also the largest change of an interval's median RSS against
    the first interval's (``level_max_change_pct``, the one farthest from 0) and whether
    every level is within ``tolerance`` of it (``levels_within``); information only, the
    verdict is ``flat``.

    >>> cps = [{"mark": 100, "rss_bytes": 200e6}, {"mark": 200, "rss_bytes": 230e6},
    ...        {"mark": 300, "rss_bytes": 210e6}]
    >>> s = summarize_soak(cps, events=300, elapsed_s=10.0, peak_rss_bytes=240_000_000)
    >>> s["ratio"], s["flat"], s["max_change_pct"], s["events_per_s"]
    (1.05, False, 15.0, 30.0)
    """
    first = checkpoints[0] if checkpoints else None
    last = checkpoints[-1] if checkpoints else None
    changes = [_change(c["rss_bytes"], first["rss_bytes"]) for c in checkpoints] if first else []
    comparable = len(checkpoints) >= 2
    base = levels[0]["median_rss_bytes"] if levels else None
    level_changes = [_change(lv["median_rss_bytes"], base) for lv in levels] if base else []
    farthest = max(level_changes, key=abs, default=0.0)
    return {
        "first_mark": first["mark"] if first else None,
        "rss_first_bytes": first["rss_bytes"] if first else None,
        "last_mark": last["mark"] if last else None,
        "rss_last_bytes": last["rss_bytes"] if last else None,
        "ratio": (
            round(last["rss_bytes"] / first["rss_bytes"], 4)
            if first and last and first["rss_bytes"]
            else None
        ),
        "max_change_pct": round(max(changes), 2) if changes else None,
        "min_change_pct": round(min(changes), 2) if changes else None,
        "tolerance_pct": round(tolerance * 100, 2),
        "flat": (all(abs(c) <= tolerance * 100 + 1e-9 for c in changes) if comparable else None),
        "level_first_bytes": base,
        "level_last_bytes": levels[-1]["median_rss_bytes"] if levels else None,
        "level_max_change_pct": round(farthest, 2) if len(level_changes) >= 2 else None,
        "levels_within": (
            all(abs(c) <= tolerance * 100 + 1e-9 for c in level_changes)
            if len(level_changes) >= 2
            else None
        ),
        "peak_rss_bytes": peak_rss_bytes,
        "events": events,
        "elapsed_s": round(elapsed_s, 1) if elapsed_s is not None else None,
        "events_per_s": round(events / elapsed_s, 1) if elapsed_s else None,
    }


def accounting_checks(
    counts: Mapping[str, int], expected: Mapping[str, int]
) -> list[dict[str, Any]]:
    """One check per expected count (input, valid, dead letters, duplicates, predictions).

    >>> accounting_checks({"input": 10, "valid": 9}, {"input": 10, "valid": 8})[1]["ok"]
    False
    """
    return count_checks("soak", counts, expected)


# -- rendering (pure) ---------------------------------------------------------------------------


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def render_checkpoints(checkpoints: Sequence[Mapping[str, Any]]) -> str:
    """One row per checkpoint: events processed, RSS, change against the first checkpoint.

    >>> print(render_checkpoints([
    ...     {"mark": 200_000, "processed": 203_412, "rss_bytes": 250e6,
    ...      "max_rss_bytes": 260e6, "elapsed_s": 58.04},
    ...     {"mark": 400_000, "processed": 405_000, "rss_bytes": 262.5e6,
    ...      "max_rss_bytes": 270e6, "elapsed_s": 115.5}]))
    | events processed | sampled at | RSS MB | change vs first | max RSS so far MB | elapsed s |
    |---:|---:|---:|---:|---:|---:|
    | 200,000 | 203,412 | 250.0 | +0.0 % | 260.0 | 58.0 |
    | 400,000 | 405,000 | 262.5 | +5.0 % | 270.0 | 115.5 |
    """
    lines = [
        "| events processed | sampled at | RSS MB | change vs first | max RSS so far MB "
        "| elapsed s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    first = checkpoints[0]["rss_bytes"] if checkpoints else 0
    for c in checkpoints:
        lines.append(
            f"| {c['mark']:,} | {c['processed']:,} | {_mb(c['rss_bytes'])} | "
            f"{_change(c['rss_bytes'], first):+.1f} % | {_mb(c['max_rss_bytes'])} | "
            f"{c['elapsed_s']:,.1f} |"
        )
    return "\n".join(lines)


def render_levels(levels: Sequence[Mapping[str, Any]]) -> str:
    """One row per interval between two checkpoints: its samples' median, lowest and highest
    RSS, and the median's change against the first interval's.

    >>> print(render_levels([
    ...     {"start": 200_000, "end": 400_000, "samples": 9, "median_rss_bytes": 280e6,
    ...      "min_rss_bytes": 266e6, "max_rss_bytes": 300e6},
    ...     {"start": 400_000, "end": 600_000, "samples": 8, "median_rss_bytes": 294e6,
    ...      "min_rss_bytes": 281e6, "max_rss_bytes": 309e6}]))
    | events processed | samples | median RSS MB | change vs first | lowest - highest MB |
    |---:|---:|---:|---:|---:|
    | 200,000 - 400,000 | 9 | 280.0 | +0.0 % | 266.0 - 300.0 |
    | 400,000 - 600,000 | 8 | 294.0 | +5.0 % | 281.0 - 309.0 |
    """
    lines = [
        "| events processed | samples | median RSS MB | change vs first | lowest - highest MB |",
        "|---:|---:|---:|---:|---:|",
    ]
    first = levels[0]["median_rss_bytes"] if levels else 0
    for lv in levels:
        lines.append(
            f"| {lv['start']:,} - {lv['end']:,} | {lv['samples']} | "
            f"{_mb(lv['median_rss_bytes'])} | {_change(lv['median_rss_bytes'], first):+.1f} % | "
            f"{_mb(lv['min_rss_bytes'])} - {_mb(lv['max_rss_bytes'])} |"
        )
    return "\n".join(lines)


def render_summary(summary: Mapping[str, Any]) -> str:
    """The verdict as a two-column table.

    >>> s = summarize_soak([{"mark": 100, "rss_bytes": 200e6}, {"mark": 200, "rss_bytes": 210e6}],
    ...                    events=200, elapsed_s=40.0, peak_rss_bytes=None)
    >>> print(render_summary(s))
    | figure | value |
    |---|---:|
    | RSS at 100 events | 200.0 MB |
    | RSS at 200 events | 210.0 MB |
    | ratio | 1.050 |
    | flat within 10 % (every checkpoint within ±10 % of the first) | yes |
    | largest change vs first | +5.0 % |
    | peak RSS (VmHWM) | - MB |
    | elapsed (first record produced to the last processed) | 40.0 s |
    | events/s | 5 |
    """
    flat = summary.get("flat")
    verdict = "yes" if flat else ("no" if flat is False else "- (fewer than 2 checkpoints)")
    tol = f"{summary.get('tolerance_pct', FLAT_TOLERANCE * 100):g}"
    ratio = summary.get("ratio")
    change = summary.get("max_change_pct")
    low = summary.get("min_change_pct")
    largest = change if change is None or low is None or abs(change) >= abs(low) else low
    elapsed = summary.get("elapsed_s")
    rate = summary.get("events_per_s")
    first, last = summary.get("first_mark"), summary.get("last_mark")
    level_change = summary.get("level_max_change_pct")
    levels = [] if level_change is None else [
        ("level: median RSS of the first and the last interval",
         f"{_mb(summary.get('level_first_bytes'))} → {_mb(summary.get('level_last_bytes'))} MB"),
        (f"levels within {tol} % of the first interval's (information; the verdict is the "
         "checkpoints')",
         f"{'yes' if summary.get('levels_within') else 'no'} "
         f"(largest change {level_change:+.1f} %)"),
    ]  # fmt: skip
    rows = [
        (f"RSS at {first:,} events" if first else "RSS at the first checkpoint",
         f"{_mb(summary.get('rss_first_bytes'))} MB"),
        (f"RSS at {last:,} events" if last else "RSS at the last checkpoint",
         f"{_mb(summary.get('rss_last_bytes'))} MB"),
        ("ratio", "-" if ratio is None else f"{ratio:.3f}"),
        (f"flat within {tol} % (every checkpoint within ±{tol} % of the first)", verdict),
        ("largest change vs first", "-" if largest is None else f"{largest:+.1f} %"),
        *levels,
        ("peak RSS (VmHWM)", f"{_mb(summary.get('peak_rss_bytes'))} MB"),
        ("elapsed (first record produced to the last processed)",
         "-" if elapsed is None else f"{elapsed:,.1f} s"),
        ("events/s", "-" if rate is None else f"{rate:,.0f}"),
    ]  # fmt: skip
    return "\n".join(["| figure | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)])


def render_soak(result: Mapping[str, Any]) -> str:
    """The checkpoint table and the summary (what ``streamproc bench --soak`` prints)."""
    soak = result.get("soak", {})
    levels = soak.get("levels") or []
    return (
        render_checkpoints(soak.get("checkpoints", []))
        + ("\n\n" + render_levels(levels) if levels else "")
        + "\n\n"
        + render_summary(soak.get("summary", {}))
    )


def render_soak_markdown(result: Mapping[str, Any]) -> str:
    """The whole soak report: command, machine, settings, checkpoints, summary, checks."""
    out = report_header(result, "streamproc bench --soak")
    out += [render_soak(result), ""]
    checks = result.get("checks", [])
    failed = [c for c in checks if not c.get("ok")]
    if checks:
        out.append(
            f"Accounting: {len(checks) - len(failed)} of {len(checks)} checks passed"
            + (":" if failed else ".")
        )
        for c in failed:
            out.append(f"- {c['what']}: expected {c['expected']:,}, found {c['found']:,}")
    return "\n".join(out).rstrip() + "\n"


# -- the input ----------------------------------------------------------------------------------


@dataclass
class ChunkStats:
    """What the chunks held so far: record kinds and valid plays (each gets predictions)."""

    kinds: dict[str, int] = field(default_factory=dict)
    plays: int = 0


def simulated_chunks(
    settings: Settings, events: int, *, seed: int, chunk: int = CHUNK_RECORDS
) -> tuple[Iterator[list[BenchRecord]], ChunkStats]:
    """The first ``events`` records of :func:`benchmarks.preload.build_workload`'s stream, in
    lists of ``chunk``; and the counts, filled in as the chunks are taken.

    The simulation's manifest keeps every session, invalid record and duplicated id it has
    sent; it is emptied after each chunk (the counts stay), so the harness's memory does not
    grow with ``events`` either.
    """
    simulation = bench_simulation(settings, events, seed)
    stats = ChunkStats()
    pending_plays: set[str] = set()  # play ids of sessions begun, whose play is not seen yet

    def chunks() -> Iterator[list[BenchRecord]]:
        left = events
        manifest = simulation.manifest
        while left > 0:
            taken = list(islice(simulation, min(chunk, left)))
            if not taken:
                raise StreamprocError(f"the simulation ended {left:,} records early")
            pending_plays.update(s.play_event_id for s in manifest.sessions)
            manifest.sessions.clear()
            manifest.invalid.clear()
            manifest.duplicated.clear()
            batch = []
            for r in taken:
                play = r.kind == "valid" and r.event_id in pending_plays
                if play:
                    pending_plays.discard(r.event_id or "")
                    stats.plays += 1
                batch.append(BenchRecord(r.key, r.value, r.event_id, r.kind, play))
            stats.kinds = {
                k: v for k, v in manifest.counts.items() if k in ("valid", "invalid", "duplicate")
            }
            left -= len(batch)
            yield batch

    return chunks(), stats


class Feeder(threading.Thread):
    """Loads chunks while the worker runs, never more than ``max_in_flight`` ahead of it.

    Parameters
    ----------
    chunks
        Lists of records, e.g. from :func:`simulated_chunks`.
    load
        Writes one chunk to the input topic and returns when the broker has acknowledged it.
    processed
        The records the worker has processed so far (the sampler's latest reading).
    max_in_flight
        A chunk is loaded only once ``produced - processed + len(chunk)`` is within this.
    """

    def __init__(
        self,
        chunks: Iterator[list[BenchRecord]],
        load: Callable[[list[BenchRecord]], None],
        processed: Callable[[], int],
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        poll_s: float = 0.25,
    ) -> None:
        super().__init__(name="soak-feeder", daemon=True)
        self.chunks = chunks
        self.load = load
        self.processed = processed
        self.max_in_flight = max_in_flight
        self.poll_s = poll_s
        self.produced = 0
        self.started_at: float | None = None  # monotonic, just before the first record
        self.most_in_flight = 0  # the largest produced - processed right after a load
        self.error: BaseException | None = None
        self.finished = False  # every chunk loaded
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            for batch in self.chunks:
                while self.produced - self.processed() + len(batch) > self.max_in_flight:
                    if self._stop_event.wait(self.poll_s):
                        return
                if self._stop_event.is_set():
                    return
                if self.started_at is None:
                    self.started_at = time.monotonic()
                self.load(batch)
                self.produced += len(batch)
                self.most_in_flight = max(self.most_in_flight, self.produced - self.processed())
            self.finished = True
        except BaseException as exc:  # reported by the sampler in the main thread
            self.error = exc


# -- the measurement ----------------------------------------------------------------------------


def _lag(settings: Settings, clients: LagClients) -> list[PartitionLag]:
    try:
        return consumer_lag(
            settings,
            settings.app_id,
            topics=[settings.topic_input, settings.topic_valid],
            with_seconds=False,
            timeout=5,
            clients=clients,
        )
    except KafkaError:
        return []  # e.g. the coordinator is busy: ask again at the next sample


def _overrides(settings: Settings) -> dict[str, str]:
    """The settings given by env vars or flags (secrets left out), as the worker gets them."""
    hidden = secret_fields()
    return {
        name: str(getattr(settings, name))
        for name in sorted(settings.model_fields_set)
        if name not in hidden
    }


def run_soak(settings: Settings, options: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Run the memory soak (see the module docstring); return the result (JSON-able).

    Raises
    ------
    StreamprocError
        If Kafka cannot start, the worker exits, nothing progresses for
        :data:`STALL_TIMEOUT_S`, or the records cannot be loaded. The worker and the bench's
        Kafka are stopped on every exit.
    """
    events, every = options.soak_events, options.soak_every
    if events is None:
        raise ValueError("run_soak() needs options.soak_events")
    started_at = _utc()
    begun = time.monotonic()
    machine = machine_info()
    bench_id = f"bench{uuid.uuid4().hex[:8]}"
    prefix = f"{bench_id}-soak"
    cluster: ClusterInfo | None = None
    reached = False
    logs = options.data_dir / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    tracker = SoakTracker(every=every, events=events)
    try:
        if options.external:
            progress.say(f"using the Kafka cluster at {settings.bootstrap_servers}")
            wait_for_broker(settings, timeout=30.0)
            reached = True
            bootstrap = settings.bootstrap_servers
            brokers: dict[str, int] = local_broker_pids(bootstrap)
        else:
            cluster = _start_kafka(settings, options, progress)
            bootstrap = cluster.bootstrap_servers
            brokers = {f"broker-{n.node_id}": n.pid for n in cluster.nodes}
        keys = settings.snapshot_keys or SecretStr(f"bench:{secrets.token_hex(16)}")
        base = settings.model_copy(update={"bootstrap_servers": bootstrap, "snapshot_keys": keys})
        ms = measurement_settings(base, prefix)
        progress.say(
            f"soak: {events:,} events, a checkpoint every {every:,}; starting 1 worker "
            f"(topics {prefix}-*) ..."
        )
        with PipelineSession(ms, 1, logs, broker_pids=brokers, say=progress.tick) as session:
            joined = session.wait_joined()
            pid = session.pids[0]
            progress.say(
                f"soak: joined in {joined:.1f} s (worker pid {pid}, RSS "
                f"{_mb(current_rss_bytes(pid))} MB); simulating and loading {events:,} records "
                f"in chunks of {min(CHUNK_RECORDS, events):,} ..."
            )
            chunks, stats = simulated_chunks(base, events, seed=options.seed)
            latest = {"processed": 0}

            def load(batch: list[BenchRecord]) -> None:
                load_records(ms, ms.topic_input, batch)

            feeder = Feeder(chunks, load, lambda: latest["processed"])
            clients = LagClients(ms, ms.app_id)
            feeder.start()
            try:
                elapsed, rss_end = _watch(
                    session, feeder, tracker, clients, latest, events, progress
                )
            finally:
                feeder.stop()
                feeder.join(timeout=30)
                clients.close()
            peak = peak_rss_bytes(pid)
            counts = session.output_counts()
    finally:
        release_kafka(settings, options, cluster, bench_id, reached=reached, progress=progress)

    checkpoints = [c.as_dict() for c in tracker.checkpoints]
    levels = interval_levels(tracker.samples, every, events)
    summary = summarize_soak(
        checkpoints, events=events, elapsed_s=elapsed, peak_rss_bytes=peak, levels=levels
    )
    summary["rss_end_bytes"] = rss_end
    summary["max_rss_sampled_bytes"] = tracker.max_rss_bytes
    summary["most_in_flight"] = feeder.most_in_flight
    n_models = len(get_model_specs(settings.models))
    expected = {
        "input": events,
        "valid": stats.kinds.get("valid", 0),
        "dead_letters": stats.kinds.get("invalid", 0),
        "duplicates_dropped": stats.kinds.get("duplicate", 0),
        "predictions": stats.plays * n_models,
    }
    return {
        "schema_version": 1,
        "kind": "soak",
        "command": options.command,
        "started_at": started_at,
        "finished_at": _utc(),
        "duration_s": round(time.monotonic() - begun, 1),
        "machine": machine,
        "load_average_end": machine_info()["load_average"],
        "settings": {
            "events": events,
            "every": every,
            "chunk_records": CHUNK_RECORDS,
            "max_in_flight": MAX_IN_FLIGHT,
            "sample_every_s": SAMPLE_EVERY_S,
            "seed": options.seed,
            "invalid": expected["dead_letters"],
            "duplicates": expected["duplicates_dropped"],
            "plays": stats.plays,
            "workers": 1,
            "agents": ms.agents,
            "models": ms.models,
            "partitions": ms.partitions,
            "batch_size": ms.batch_size,
            "log_level": ms.log_level,
            "snapshot_every_events": ms.snapshot_every_events,
            "dedupe_window_s": getattr(ms, "dedupe_window_s", None),
            "dedupe_max_ids": getattr(ms, "dedupe_max_ids", None),
            "overrides": _overrides(settings),
            "kafka": "external" if cluster is None else "started by the bench (1 broker)",
            "kafka_version": cluster.kafka_version if cluster is not None else "external",
        },
        "soak": {
            "checkpoints": checkpoints,
            "levels": levels,
            "summary": summary,
            "samples": tracker.samples,
            "counts": counts,
        },
        "checks": accounting_checks(counts, expected),
        "figures": [],
    }


def _watch(
    session: PipelineSession,
    feeder: Feeder,
    tracker: SoakTracker,
    clients: LagClients,
    latest: dict[str, int],
    events: int,
    progress: Progress,
) -> tuple[float, int | None]:
    """Sample until done; return the seconds from the first record produced until "done" was
    first seen, and the worker's RSS at the end."""
    s = session.settings
    pid = session.pids[0]
    last_progress: tuple[int, int] | None = None
    last_change = time.monotonic()
    done_ends: dict[tuple[str, int], int] | None = None
    done_at = 0.0
    recent: deque[tuple[float, int]] = deque(maxlen=6)  # the rate over the last ~10 s
    while True:
        tick = time.monotonic()
        session.check_alive()
        if feeder.error is not None:
            raise StreamprocError(
                f"loading the soak's records failed: {feeder.error}"
            ) from feeder.error
        rows = _lag(s, clients)
        now = time.monotonic()
        rss = current_rss_bytes(pid)
        if rows:
            processed = sum(r.committed or 0 for r in rows if r.topic == s.topic_input)
            scored = sum(r.committed or 0 for r in rows if r.topic == s.topic_valid)
            valid_lag = sum(r.lag for r in rows if r.topic == s.topic_valid)
            finished = finished_events(processed, valid_lag)
            latest["processed"] = processed
            if (processed, scored) != last_progress:
                last_progress, last_change = (processed, scored), now
            t0 = feeder.started_at
            if t0 is not None and rss is not None:
                for c in tracker.observe(
                    finished,
                    rss,
                    now - t0,
                    ingested=processed,
                    scored=scored,
                    produced=feeder.produced,
                ):
                    progress.say(
                        f"soak: checkpoint {c.mark:,}: RSS {_mb(c.rss_bytes)} MB (max "
                        f"{_mb(c.max_rss_bytes)} MB) at {c.processed:,} processed, "
                        f"{c.elapsed_s:,.1f} s"
                    )
                recent.append((now, finished))
                rate = (
                    (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
                    if len(recent) > 1
                    else 0.0
                )
                progress.tick(
                    f"soak: {finished:,} / {events:,} processed ({processed:,} through the ingest "
                    f"stage, {feeder.produced:,} produced, model stage {valid_lag:,} behind), "
                    f"{rate:,.0f} events/s, RSS {_mb(rss)} MB "
                    f"(max {_mb(tracker.max_rss_bytes)} MB), {now - t0:,.0f} s"
                )
            done = (
                feeder.finished
                and processed >= events
                and valid_lag == 0
                and all(r.lag == 0 for r in rows)
            )
            ends = {(r.topic, r.partition): r.log_end for r in rows}
            if done and done_ends == ends and t0 is not None:
                return done_at - t0, rss
            if done and done_ends is None:
                done_at = (tick + now) / 2
            done_ends = ends if done else None
        started = feeder.started_at
        if started is not None and now - max(last_change, started) > STALL_TIMEOUT_S:
            raise StreamprocError(
                f"the soak made no progress for {STALL_TIMEOUT_S:.0f} s "
                f"({latest['processed']:,} / {events:,} processed, {feeder.produced:,} "
                f"produced); see the worker's log in {session.log_dir}"
            )
        time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - tick)))
