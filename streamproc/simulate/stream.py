"""Sessions -> one interleaved stream of encoded records, with invalid and duplicate extras.

Sessions start as a Poisson process (``sessions_per_minute``) and overlap; their events are
merged in event-time order with a heap, so the stream looks like a live service. Time
offsets are rebased to epoch milliseconds at ``start_time_ms``. By default the timeline is
placed so that its last event is at the moment the simulation is created: a run sent as fast
as possible then has no event in the future (the ingest rejects event_time > now + 300 s),
and a run of 20,000 events covers a few hours.

Randomness comes from separate streams derived from the seed (world, sessions, extras), so
the valid events of a seed do not change with ``invalid_fraction`` or
``duplicate_fraction``, and a fixed ``start_time_ms`` gives identical bytes every time.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from streamproc.config import OutputFormat, Settings
from streamproc.emit.encode import Encoder
from streamproc.ingest.schemas import load_schemas
from streamproc.simulate.corrupt import Corruptor, InvalidRecord
from streamproc.simulate.manifest import Manifest
from streamproc.simulate.sessions import PlannedEvent, SessionPlan, plan_session
from streamproc.simulate.truth import SCENARIOS, make_scenario
from streamproc.simulate.world import World, build_world

__all__ = [
    "RecordKind",
    "SimParams",
    "SimRecord",
    "Simulation",
    "sessions_per_minute_for",
    "simulate_events",
]

logger = logging.getLogger(__name__)

RecordKind = Literal["valid", "invalid", "duplicate"]

#: Longest a simulated timeline may span: valid events must stay younger than 30 days.
_MAX_SPAN_MS = 7 * 86_400_000
_MEAN_EVENTS_PER_SESSION = 8.0


def sessions_per_minute_for(n_events: int, at_least: float = 20.0) -> float:
    """A session arrival rate (simulated minutes) that keeps ``n_events`` within the longest
    timeline, with room to spare, and is at least ``at_least``.

    >>> sessions_per_minute_for(20_000), round(sessions_per_minute_for(2_000_000), 1)
    (20.0, 37.2)
    """
    sessions = n_events / _MEAN_EVENTS_PER_SESSION
    return max(at_least, sessions / (_MAX_SPAN_MS / 60_000) * 1.5)


#: A duplicate is re-sent between 1 and this many records later.
_DUPLICATE_DELAY = 200


@dataclass(frozen=True, slots=True)
class SimParams:
    """Parameters of a simulation run.

    Parameters
    ----------
    n_events
        Valid session events to send (0, or at least 2); sessions are whole, the last one
        is shortened to fit. Invalid records and duplicates come on top.
    n_users, n_titles
        Size of the world.
    seed
        Seed of every random draw.
    fmt
        ``avro`` (single-object encoding) or ``json``.
    invalid_fraction
        Fraction of all emitted records that are invalid extras, in [0, 0.9].
    duplicate_fraction
        Fraction of valid events sent a second time, in [0, 1].
    scenario
        Ground-truth scenario name (``stationary``).
    start_time_ms
        Event time of the first session's start, epoch ms; ``None``: the timeline ends now.
    sessions_per_minute
        Session arrival rate in simulated time; ``None``: 20 a minute, more if needed to keep
        the whole run within 7 days.
    speed
        Time compression: every simulated gap is divided by it.
    world_seed
        Seed of the world alone (users, titles, their tastes and networks); ``None``: ``seed``.
        Two runs with the same world seed and different seeds are new sessions of the same
        viewers (new event and session ids): a continuation of one service, not another one.
    """

    n_events: int = 20_000
    n_users: int = 1_000
    n_titles: int = 500
    seed: int = 0
    fmt: OutputFormat = "avro"
    invalid_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    scenario: str = "stationary"
    start_time_ms: int | None = None
    sessions_per_minute: float | None = None
    speed: float = 1.0
    world_seed: int | None = None

    def __post_init__(self) -> None:
        if self.n_events < 0 or self.n_events == 1:
            raise ValueError(
                f"n_events must be 0 or at least 2 (a session is play + end), got {self.n_events}"
            )
        if self.n_users < 1 or self.n_titles < 1:
            raise ValueError(
                f"n_users and n_titles must be >= 1, got {self.n_users} and {self.n_titles}"
            )
        if self.fmt not in ("avro", "json"):
            raise ValueError(f"fmt must be avro or json, got {self.fmt!r}")
        if not 0.0 <= self.invalid_fraction <= 0.9:
            raise ValueError(f"invalid_fraction must be in [0, 0.9], got {self.invalid_fraction}")
        if not 0.0 <= self.duplicate_fraction <= 1.0:
            raise ValueError(f"duplicate_fraction must be in [0, 1], got {self.duplicate_fraction}")
        if self.scenario not in SCENARIOS:
            raise ValueError(
                f"unknown scenario {self.scenario!r}; known: {', '.join(sorted(SCENARIOS))}"
            )
        if self.sessions_per_minute is not None and not self.sessions_per_minute > 0:
            raise ValueError(f"sessions_per_minute must be > 0, got {self.sessions_per_minute}")
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ValueError(f"speed must be a finite number > 0, got {self.speed}")

    @property
    def arrival_rate_per_minute(self) -> float:
        """Sessions per simulated minute actually used."""
        if self.sessions_per_minute is not None:
            return self.sessions_per_minute
        return sessions_per_minute_for(self.n_events)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One record to publish to the input topic."""

    key: bytes  # user_id
    value: bytes
    event_id: str | None  # None for records whose bytes carry no id (random bytes)
    kind: RecordKind
    expected_reason: str | None  # dead-letter reason of an invalid record, else None


class Simulation(Iterator[SimRecord]):
    """An iterator of :class:`SimRecord`; :attr:`manifest` is complete once it is exhausted.

    Parameters
    ----------
    params
        What to simulate.
    settings
        Where the schemas are (``schemas_path``) and the size limit ``too_large`` records
        must exceed (``max_message_bytes``).
    now_ms
        The wall clock used when ``params.start_time_ms`` is None (default: ``time.time()``).
    """

    def __init__(self, params: SimParams, settings: Settings, *, now_ms: int | None = None):
        self.params = params
        schemas = load_schemas(settings.schemas_path)
        self._avro = Encoder.for_record(schemas, "ViewingEvent", "avro", check=False)
        self._json = Encoder.for_record(schemas, "ViewingEvent", "json", check=False)
        self._encode = self._avro.encode if params.fmt == "avro" else self._json.encode
        world_seed = params.seed if params.world_seed is None else params.world_seed
        self._world: World = build_world(world_seed, params.n_users, params.n_titles)
        self._scenario = make_scenario(params.scenario)
        self._extras_rng = random.Random(f"streamproc.simulate:{params.seed}:extras")
        self._corruptor = Corruptor(
            params.fmt,
            self._avro,
            self._json,
            frozenset(schemas.by_fingerprint),
            settings.max_message_bytes,
            random.Random(f"streamproc.simulate:{params.seed}:corrupt"),
        )
        start = params.start_time_ms
        if start is None:
            now = int(time.time()) * 1000 if now_ms is None else now_ms
            start = now - self._span_ms()
        self.start_time_ms = start
        self.manifest = Manifest(seed=params.seed, params=params.to_dict(), start_time_ms=start)
        self._records = self._generate()

    def __iter__(self) -> Simulation:
        return self

    def __next__(self) -> SimRecord:
        return next(self._records)

    # -- planning -------------------------------------------------------------------------------

    def _plans(self) -> Iterator[SessionPlan]:
        """The sessions in order of start; the same sequence on every call."""
        params = self.params
        rng = random.Random(f"streamproc.simulate:{params.seed}:sessions")
        mean_gap_ms = 60_000.0 / params.arrival_rate_per_minute / params.speed
        remaining, planned, clock, index = params.n_events, 0, 0.0, 0
        while remaining >= 2:
            plan = plan_session(
                self._world,
                rng,
                self._scenario,
                index=index,
                start_ms=int(clock),
                budget=remaining,
                event_index=planned,
                speed=params.speed,
            )
            remaining -= len(plan.events)
            planned += len(plan.events)
            index += 1
            yield plan
            clock += rng.expovariate(1.0 / mean_gap_ms)

    def _span_ms(self) -> int:
        """Offset of the last event from the first session's start (a planning pass)."""
        return max((plan.end_ms for plan in self._plans()), default=0)

    # -- the stream -----------------------------------------------------------------------------

    def _event(
        self, plan: SessionPlan, seq: int, planned: PlannedEvent, when: int
    ) -> dict[str, Any]:
        user = self._world.users[plan.user_index]
        title = self._world.titles[plan.title_index]
        return {
            "event_id": planned.event_id,
            "session_id": plan.truth.session_id,
            "user_id": user.user_id,
            "title_id": title.title_id,
            "event_type": planned.event_type,
            "event_time": when,
            "device": {"type": user.device_type, "os": user.os, "app_version": user.app_version},
            "network": {
                "connection_type": user.connection_type,
                "bandwidth_kbps": planned.bandwidth_kbps,
                "rtt_ms": planned.rtt_ms,
                "cdn": user.cdn,
                "isp": user.isp,
            },
            "playback": {
                "position_s": planned.position_s,
                "duration_s": title.duration_s,
                "bitrate_kbps": planned.bitrate_kbps,
                "rebuffer_count": planned.rebuffer_count,
                "rebuffer_ms": planned.rebuffer_ms,
                "dropped_frames": planned.dropped_frames,
            },
            "region": user.region,
            "rating": planned.rating,
            "title": (
                {"genre": title.genre, "release_year": title.release_year}
                if plan.title_known
                else None
            ),
            "seq": seq,
            "experiment": user.experiment,
        }

    def _generate(self) -> Iterator[SimRecord]:
        params, manifest, start = self.params, self.manifest, self.start_time_ms
        counts = manifest.counts
        rng = self._extras_rng
        # Invalid extras per valid event so that invalid / all records == invalid_fraction.
        f, d = params.invalid_fraction, params.duplicate_fraction
        invalid_per_valid = f * (1.0 + d) / (1.0 - f)
        pending: list[tuple[int, int, SimRecord]] = []  # (due index, tie, duplicate)
        heap: list[tuple[int, int, int, SessionPlan]] = []  # (event_time, session, seq, plan)
        plans = self._plans()
        upcoming = next(plans, None)
        emitted = 0

        def emit(record: SimRecord) -> SimRecord:
            nonlocal emitted
            emitted += 1
            counts["records"] += 1
            counts[record.kind] += 1
            return record

        while heap or upcoming is not None:
            if upcoming is not None and (not heap or start + upcoming.start_ms <= heap[0][0]):
                plan = upcoming
                begin = start + plan.start_ms
                heapq.heappush(heap, (begin + plan.events[0].offset_ms, plan.index, 0, plan))
                manifest.sessions.append(dataclasses.replace(plan.truth, start_time_ms=begin))
                counts["sessions"] += 1
                upcoming = next(plans, None)
                continue
            when, _, seq, plan = heapq.heappop(heap)
            if seq + 1 < len(plan.events):
                nxt = start + plan.start_ms + plan.events[seq + 1].offset_ms
                heapq.heappush(heap, (nxt, plan.index, seq + 1, plan))
            planned = plan.events[seq]
            event = self._event(plan, seq, planned, when)
            key = event["user_id"].encode()
            value = self._encode(event)
            yield emit(SimRecord(key, value, planned.event_id, "valid", None))
            if d and rng.random() < d:
                due = emitted + rng.randint(1, _DUPLICATE_DELAY)
                dup = SimRecord(key, value, planned.event_id, "duplicate", None)
                heapq.heappush(pending, (due, emitted, dup))
                manifest.duplicated.add(planned.event_id)
            if f:
                n_invalid = int(invalid_per_valid)
                n_invalid += rng.random() < invalid_per_valid - n_invalid
                for _ in range(n_invalid):
                    bad, event_id, reason, variant = self._corruptor.make(event)
                    manifest.invalid.append(InvalidRecord(emitted, event_id, reason, variant))
                    yield emit(SimRecord(key, bad, event_id, "invalid", reason))
            while pending and pending[0][0] <= emitted:
                yield emit(heapq.heappop(pending)[2])
        while pending:
            yield emit(heapq.heappop(pending)[2])
        manifest.complete = True
        logger.info(
            "simulated %d records (%d valid, %d invalid, %d duplicates) in %d sessions",
            counts["records"],
            counts["valid"],
            counts["invalid"],
            counts["duplicate"],
            counts["sessions"],
        )


def simulate_events(
    params: SimParams, settings: Settings, *, now_ms: int | None = None
) -> Simulation:
    """The records of a simulation run; read ``.manifest`` after exhausting the iterator.

    Examples
    --------
    >>> from streamproc.config import load_settings
    >>> sim = simulate_events(SimParams(n_events=50, seed=3, invalid_fraction=0.1,
    ...                                 start_time_ms=1_700_000_000_000), load_settings())
    >>> records = list(sim)
    >>> sim.manifest.counts["valid"], sim.manifest.complete
    (50, True)
    >>> len(records) == sim.manifest.counts["records"]
    True
    """
    return Simulation(params, settings, now_ms=now_ms)
