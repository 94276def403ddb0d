"""One viewing session: its hidden truth and its planned events, from ``play`` to the end.

A session is planned whole when it starts: the truth (:mod:`.truth`) fixes the rebuffering
ratio, whether it completes, how far it gets and the rating; then the happenings along the
watched time (stalls, pauses, seeks, bitrate changes) are drawn and turned into events with
positions and time offsets. Positions never decrease and stay within the title's duration;
``rebuffer_count`` / ``rebuffer_ms`` count every stall up to the event (a ``rebuffer`` event
is reported when its stall ends), so they are cumulative.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from streamproc.simulate.truth import (
    Scenario,
    expected_rebuffer_ratio,
    p_complete,
    rating_score,
)
from streamproc.simulate.world import (
    BITRATE_LADDER_KBPS,
    CDN_QUALITY,
    DEVICE_MAX_BITRATE_INDEX,
    World,
)

__all__ = [
    "PlannedEvent",
    "SessionPlan",
    "SessionTruth",
    "new_uuid",
    "plan_session",
    "poisson",
]

#: Most ``rebuffer`` events one session reports (stalls beyond are still counted).
MAX_REBUFFER_EVENTS = 6
_DROPPED_FRAME_DEVICES = frozenset({"tv", "desktop", "console"})
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version nibble and variant bits
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (deterministic for a seeded ``rng``).

    >>> new_uuid(random.Random(1))
    'cd613e30-d8f1-4adf-91b7-584a2265b1f5'
    """
    # As uuid.UUID(int=..., version=4) spells it, without building the object (hot path).
    bits = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson(``lam``) draw (normal approximation above 30).

    >>> rng = random.Random(3)
    >>> [poisson(rng, 2.0) for _ in range(5)]
    [1, 3, 0, 2, 4]
    """
    if lam <= 0.0:
        return 0
    if lam > 30.0:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@dataclass(frozen=True, slots=True)
class SessionTruth:
    """What really drove a session (hidden from the models; for measuring them)."""

    session_id: str
    user_id: str
    title_id: str
    play_event_id: str
    start_time_ms: int
    p_complete: float
    expected_rebuffer_ratio: float
    completed: bool
    watched_fraction: float
    rating: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class PlannedEvent:
    """One event of a session, before it is laid out as a ViewingEvent dict."""

    offset_ms: int  # from the session's start
    event_type: str
    event_id: str
    position_s: float
    bitrate_kbps: int
    rebuffer_count: int
    rebuffer_ms: int
    dropped_frames: int | None
    bandwidth_kbps: float
    rtt_ms: float
    rating: int | None = None


@dataclass(slots=True)
class SessionPlan:
    """A planned session: the truth, the static fields and the events in order."""

    index: int
    start_ms: int  # offset from the simulation start
    user_index: int
    title_index: int
    truth: SessionTruth
    events: list[PlannedEvent]
    title_known: bool  # False: the client sends no title metadata

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.events[-1].offset_ms


# Happening kinds, in the order they sort at the same watched time.
_STALL, _PAUSE, _SEEK, _BITRATE = 0, 1, 2, 3
_KIND_NAMES = {_STALL: "rebuffer", _PAUSE: "pause", _SEEK: "seek", _BITRATE: "bitrate_change"}


def _abr_index(bandwidth_kbps: float, aggressiveness: float, max_index: int) -> int:
    target = aggressiveness * bandwidth_kbps
    index = bisect.bisect_right(BITRATE_LADDER_KBPS, target) - 1
    return min(max(index, 0), max_index)


def plan_session(
    world: World,
    rng: random.Random,
    scenario: Scenario,
    *,
    index: int,
    start_ms: int,
    budget: int,
    event_index: int,
    speed: float = 1.0,
) -> SessionPlan:
    """Plan one whole session with at most ``budget`` events (``budget`` >= 2).

    The session has exactly ``budget`` events when its natural length is more than
    ``budget`` or ``budget - 1``, so that the caller never ends with one event to spare.

    Parameters
    ----------
    world
        Users and titles.
    rng
        The planning random stream (advanced).
    scenario
        Ground truth in force; asked at ``event_index``.
    index
        Number of the session in the simulation.
    start_ms
        Start offset from the simulation start, ms.
    budget
        Most events the session may have.
    event_index
        Valid events planned before this session (for the scenario).
    speed
        Time compression: wall-clock gaps inside the session are divided by it.

    Examples
    --------
    >>> from streamproc.simulate.truth import StationaryScenario
    >>> from streamproc.simulate.world import build_world
    >>> world = build_world(seed=1, n_users=10, n_titles=20)
    >>> plan = plan_session(world, random.Random(5), StationaryScenario(), index=0,
    ...                     start_ms=0, budget=100, event_index=0)
    >>> plan.events[0].event_type, plan.events[-1].event_type in ("stop", "complete", "rating")
    ('play', True)
    """
    if budget < 2:
        raise ValueError(f"a session needs a budget of at least 2 events, got {budget}")
    coef = scenario.coefficients_at(event_index)
    user_index = rng.randrange(len(world.users))
    user = world.users[user_index]
    title_index = world.pick_title(rng, user)
    title = world.titles[title_index]
    affinity = scenario.affinity_at(
        user.affinity[title.genre_index], title.genre_index, event_index
    )
    bandwidth, rtt = scenario.network_at(
        user.bandwidth_kbps * rng.lognormvariate(0.0, 0.35),
        user.rtt_ms * rng.lognormvariate(0.0, 0.3),
        event_index,
    )
    max_index = DEVICE_MAX_BITRATE_INDEX[user.device_type]
    bitrate_index = _abr_index(bandwidth, rng.uniform(0.4, 1.3), max_index)
    bitrate = BITRATE_LADDER_KBPS[bitrate_index]
    ratio = expected_rebuffer_ratio(
        coef,
        bandwidth_kbps=bandwidth,
        rtt_ms=rtt,
        connection_type=user.connection_type,
        cdn_quality=CDN_QUALITY[user.cdn],
        bitrate_kbps=bitrate,
    )
    p = p_complete(
        coef,
        affinity=affinity,
        popularity_z=title.popularity_z,
        rebuffer_ratio=ratio,
        bitrate_kbps=bitrate,
        device_type=user.device_type,
        duration_s=title.duration_s,
        engagement=user.engagement,
    )
    completed = rng.random() < p
    fraction = rng.uniform(0.9, 1.0) if completed else 0.01 + 0.87 * rng.random() ** 1.3
    duration = title.duration_s
    end_position = round(fraction * duration, 3)
    rating = (
        rating_score(affinity, completed, ratio, rng.gauss(0.0, 0.7))
        if rng.random() < coef.p_rating
        else None
    )

    # Seeks jump forward; the watched time W is the end position minus the jumps.
    jumps = [rng.uniform(10.0, 240.0) for _ in range(poisson(rng, 0.4))]
    if sum(jumps) > 0.3 * end_position:
        jumps = []
    watched = end_position - sum(jumps)
    mean_stall_s = 1.5 + 20.0 * ratio
    n_stalls = poisson(rng, watched * ratio / mean_stall_s)
    stalls = sorted(
        (rng.uniform(0.0, watched), max(100, int(rng.expovariate(1.0 / mean_stall_s) * 1000)))
        for _ in range(n_stalls)
    )
    # (watched time, kind, value); stall value = ms, pause = ms, seek = jump s, bitrate = index
    happenings: list[tuple[float, int, float]] = [
        (rng.uniform(0.0, watched), _PAUSE, min(1_800_000.0, rng.expovariate(1 / 90.0) * 1000))
        for _ in range(poisson(rng, 0.3 + 0.8 * watched / 3600.0))
    ]
    happenings += [(rng.uniform(0.0, watched), _SEEK, jump) for jump in jumps]
    load = bitrate / max(bandwidth, 1.0)
    happenings += [
        (rng.uniform(0.0, watched), _BITRATE, 0.0)
        for _ in range(min(6, poisson(rng, 0.5 + 2.0 * load)))
    ]
    reported = sorted(rng.sample(range(n_stalls), min(n_stalls, MAX_REBUFFER_EVENTS)))
    happenings += [(stalls[i][0], _STALL, float(i)) for i in reported]

    # Fit the budget: drop the rating, then random happenings; pad one pause if one would
    # be left over (a session needs two events, so one spare event could never be used).
    n_fixed = 2 + (rating is not None)
    if n_fixed + len(happenings) > budget and rating is not None:
        rating, n_fixed = None, 2
    while n_fixed + len(happenings) > budget:
        happenings.pop(rng.randrange(len(happenings)))
    if budget - (n_fixed + len(happenings)) == 1:
        happenings.append((rng.uniform(0.0, watched), _PAUSE, rng.uniform(2_000.0, 60_000.0)))
    happenings.sort()

    stall_w = [s[0] for s in stalls]
    stall_ms_cum = list(itertools.accumulate(s[1] for s in stalls))
    dropped_rate = rng.expovariate(1 / 0.05) if user.device_type in _DROPPED_FRAME_DEVICES else None
    session_id = new_uuid(rng)
    events: list[PlannedEvent] = []
    rand = rng.random

    def add(kind: str, w: float, position: float, wall_s: float, extra_ms: int = 0) -> None:
        count = bisect.bisect_right(stall_w, w)
        rebuffer_ms = stall_ms_cum[count - 1] if count else 0
        events.append(
            PlannedEvent(
                offset_ms=int((wall_s * 1000.0 + rebuffer_ms + extra_ms) / speed),
                event_type=kind,
                event_id=new_uuid(rng),
                position_s=round(min(position, duration), 3),
                bitrate_kbps=BITRATE_LADDER_KBPS[bitrate_index],
                rebuffer_count=count,
                rebuffer_ms=rebuffer_ms,
                dropped_frames=None if dropped_rate is None else int(w * dropped_rate),
                # +-10 % measurement noise (cheaper than a lognormal draw, on the hot path)
                bandwidth_kbps=round(bandwidth * (0.9 + 0.2 * rand()), 1),
                rtt_ms=round(rtt * (0.9 + 0.2 * rand()), 1),
            )
        )

    add("play", 0.0, 0.0, 0.0)
    jumped = 0.0  # seconds skipped by seeks so far
    paused_s = 0.0  # wall time spent paused or seeking so far
    for w, kind, value in happenings:
        if kind == _SEEK:
            jumped += value
            paused_s += rng.uniform(0.3, 2.5)
        elif kind == _BITRATE:
            step = rng.choice((-2, -1, -1, 1, 1, 2))
            bitrate_index = min(max(bitrate_index + step, 0), max_index)
        add(_KIND_NAMES[kind], w, w + jumped, w + paused_s)
        if kind == _PAUSE:
            paused_s += value / 1000.0
    end_kind = "complete" if fraction >= 0.9 else "stop"
    add(end_kind, watched, end_position, watched + paused_s)
    if rating is not None:
        add("rating", watched, end_position, watched + paused_s + rng.uniform(3.0, 60.0))
        events[-1].rating = rating
    truth = SessionTruth(
        session_id=session_id,
        user_id=user.user_id,
        title_id=title.title_id,
        play_event_id=events[0].event_id,
        start_time_ms=start_ms,  # offset; the stream rebases it to epoch ms
        p_complete=p,
        expected_rebuffer_ratio=ratio,
        completed=completed,
        watched_fraction=fraction,
        rating=rating,
    )
    title_known = rng.random() < 0.95
    return SessionPlan(index, start_ms, user_index, title_index, truth, events, title_known)
