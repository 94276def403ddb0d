"""The simulated world: users with latent tastes and a device/network profile, and titles.

Everything is drawn from one ``random.Random`` seeded from the simulation seed, so a seed and
the sizes give the same world every time. Latent values (genre affinities, engagement, CDN
quality, title popularity) are what the hidden ground truth (:mod:`.truth`) uses; only the
observable parts (device, network, region, genre, release year, duration) reach the events.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BITRATE_LADDER_KBPS",
    "CDN_QUALITY",
    "CONNECTION_TYPES",
    "DEVICE_TYPES",
    "GENRES",
    "REGIONS",
    "Title",
    "User",
    "World",
    "build_world",
    "weighted_choice",
]

GENRES: tuple[str, ...] = (
    "action",
    "animation",
    "comedy",
    "documentary",
    "drama",
    "horror",
    "kids",
    "romance",
    "sci-fi",
    "thriller",
)
DEVICE_TYPES: tuple[str, ...] = ("tv", "mobile", "tablet", "desktop", "console", "other")
_DEVICE_WEIGHTS = (0.34, 0.26, 0.10, 0.18, 0.07, 0.05)
_OS_BY_DEVICE: dict[str, tuple[str, ...]] = {
    "tv": ("tizen-7", "webos-23", "androidtv-12", "roku-12"),
    "mobile": ("android-13", "android-14", "ios-17.4", "ios-18.1"),
    "tablet": ("ipados-17.4", "android-14", "fireos-8"),
    "desktop": ("windows-11", "macos-14.4", "linux-6.8"),
    "console": ("ps5-9.0", "xbox-10.0"),
    "other": ("chromecast-1.56", "fireos-7"),
}
APP_VERSIONS: tuple[str, ...] = ("8.110.0", "8.111.2", "8.112.0", "8.113.1")
_APP_VERSION_WEIGHTS = (0.08, 0.22, 0.45, 0.25)
CONNECTION_TYPES: tuple[str, ...] = ("wifi", "ethernet", "cellular", "satellite", "other")
_CONNECTION_WEIGHTS_BY_DEVICE: dict[str, tuple[float, ...]] = {
    "tv": (0.60, 0.35, 0.0, 0.03, 0.02),
    "mobile": (0.55, 0.0, 0.43, 0.0, 0.02),
    "tablet": (0.85, 0.0, 0.13, 0.0, 0.02),
    "desktop": (0.55, 0.40, 0.02, 0.02, 0.01),
    "console": (0.45, 0.52, 0.0, 0.02, 0.01),
    "other": (0.80, 0.10, 0.0, 0.05, 0.05),
}
#: Median bandwidth (kbps) and round-trip time (ms) of a connection type.
_BANDWIDTH_KBPS = {
    "wifi": 25_000.0,
    "ethernet": 60_000.0,
    "cellular": 9_000.0,
    "satellite": 6_000.0,
    "other": 12_000.0,
}
_RTT_MS = {"wifi": 28.0, "ethernet": 12.0, "cellular": 55.0, "satellite": 620.0, "other": 40.0}
REGIONS: tuple[str, ...] = (
    "eu-west",
    "eu-central",
    "us-east",
    "us-west",
    "ap-south",
    "ap-northeast",
    "sa-east",
)
_REGION_WEIGHTS = (0.18, 0.14, 0.22, 0.16, 0.12, 0.10, 0.08)
#: Hidden quality of each CDN in (0, 1]; a worse CDN rebuffers more.
CDN_QUALITY: dict[str, float] = {"cdn-a": 0.95, "cdn-b": 0.80, "cdn-c": 0.55}
_CDN_WEIGHTS_BY_REGION: dict[str, tuple[float, float, float]] = {
    "eu-west": (0.6, 0.3, 0.1),
    "eu-central": (0.5, 0.4, 0.1),
    "us-east": (0.7, 0.2, 0.1),
    "us-west": (0.6, 0.3, 0.1),
    "ap-south": (0.2, 0.3, 0.5),
    "ap-northeast": (0.5, 0.4, 0.1),
    "sa-east": (0.2, 0.4, 0.4),
}
#: Bitrates (kbps) the player can choose from, and the highest index per device type.
BITRATE_LADDER_KBPS: tuple[int, ...] = (
    235,
    375,
    560,
    750,
    1050,
    1750,
    2350,
    3000,
    4300,
    5800,
    8000,
    16000,
)
DEVICE_MAX_BITRATE_INDEX: dict[str, int] = {
    "tv": 11,
    "console": 11,
    "desktop": 10,
    "tablet": 8,
    "mobile": 7,
    "other": 9,
}
_EXPERIMENT_ARMS = ("abr-v2:control", "abr-v2:treatment")


def weighted_choice(rng: random.Random, cumulative: Sequence[float]) -> int:
    """Index drawn with the weights whose running sums are ``cumulative``.

    Examples
    --------
    >>> rng = random.Random(7)
    >>> [weighted_choice(rng, (0.1, 0.2, 1.0)) for _ in range(6)]
    [2, 1, 2, 0, 2, 2]
    """
    return bisect.bisect_right(cumulative, rng.random() * cumulative[-1])


def _cum(weights: Sequence[float]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


@dataclass(frozen=True, slots=True)
class User:
    """A viewer: observable profile plus latent tastes (``affinity``, ``engagement``)."""

    user_id: str
    affinity: tuple[float, ...]  # latent liking per genre (index of GENRES), ~ N(0, 1)
    genre_cumulative: tuple[float, ...]  # running sums of softmax(1.2 * affinity)
    engagement: float  # latent tendency to finish what they start, ~ N(0, 0.6)
    device_type: str
    os: str
    app_version: str
    connection_type: str
    region: str
    isp: str | None
    cdn: str
    bandwidth_kbps: float  # median throughput of this user's connection
    rtt_ms: float  # median round-trip time to the CDN edge
    experiment: str | None


@dataclass(frozen=True, slots=True)
class Title:
    """A film or episode; ``popularity_z`` (standardised log popularity) is latent."""

    title_id: str
    genre: str
    genre_index: int
    duration_s: float
    release_year: int
    popularity: float  # selection weight within the genre (Zipf-like)
    popularity_z: float


@dataclass(frozen=True, slots=True)
class World:
    """Users and titles, with per-genre title indexes for fast sampling."""

    seed: int
    users: tuple[User, ...]
    titles: tuple[Title, ...]
    titles_by_genre: tuple[tuple[int, ...], ...]  # genre index -> title indexes
    title_cumulative: tuple[tuple[float, ...], ...]  # genre index -> running popularity sums

    def pick_title(self, rng: random.Random, user: User) -> int:
        """Index of a title for ``user``: a genre by taste, then a title of it by popularity."""
        genre = weighted_choice(rng, user.genre_cumulative)
        members = self.titles_by_genre[genre]
        return members[weighted_choice(rng, self.title_cumulative[genre])]


def _make_user(rng: random.Random, index: int, has_titles: Sequence[bool]) -> User:
    affinity = tuple(rng.gauss(0.0, 1.0) for _ in GENRES)
    # Viewers mostly pick genres they like; genres without titles are never picked.
    weights = [math.exp(1.2 * a) if ok else 0.0 for a, ok in zip(affinity, has_titles, strict=True)]
    device = DEVICE_TYPES[weighted_choice(rng, _cum(_DEVICE_WEIGHTS))]
    connection = CONNECTION_TYPES[weighted_choice(rng, _cum(_CONNECTION_WEIGHTS_BY_DEVICE[device]))]
    region = REGIONS[weighted_choice(rng, _cum(_REGION_WEIGHTS))]
    cdn = tuple(CDN_QUALITY)[weighted_choice(rng, _cum(_CDN_WEIGHTS_BY_REGION[region]))]
    isp = None if rng.random() < 0.2 else f"isp-{region}-{rng.randrange(1, 6)}"
    experiment = _EXPERIMENT_ARMS[rng.randrange(2)] if rng.random() < 0.2 else None
    return User(
        user_id=f"u-{index:06d}",
        affinity=affinity,
        genre_cumulative=_cum(weights),
        engagement=rng.gauss(0.0, 0.6),
        device_type=device,
        os=rng.choice(_OS_BY_DEVICE[device]),
        app_version=APP_VERSIONS[weighted_choice(rng, _cum(_APP_VERSION_WEIGHTS))],
        connection_type=connection,
        region=region,
        isp=isp,
        cdn=cdn,
        bandwidth_kbps=_BANDWIDTH_KBPS[connection] * rng.lognormvariate(0.0, 0.6),
        rtt_ms=_RTT_MS[connection] * rng.lognormvariate(0.0, 0.4),
        experiment=experiment,
    )


def _make_titles(rng: random.Random, n_titles: int) -> list[Title]:
    ranks = list(range(n_titles))
    rng.shuffle(ranks)
    popularity = [1.0 / (r + 1) ** 0.9 for r in ranks]
    logs = [math.log(p) for p in popularity]
    mean = sum(logs) / n_titles
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / n_titles) or 1.0
    titles = []
    for i in range(n_titles):
        genre_index = rng.randrange(len(GENRES))
        # Mostly recent releases: 2025 minus an exponential number of years, from 1950.
        year = max(1950, 2025 - int(rng.expovariate(1 / 9.0)))
        titles.append(
            Title(
                title_id=f"t-{i:05d}",
                genre=GENRES[genre_index],
                genre_index=genre_index,
                duration_s=float(rng.randint(20, 150) * 60 + rng.randrange(60)),
                release_year=year,
                popularity=popularity[i],
                popularity_z=(logs[i] - mean) / sd,
            )
        )
    return titles


def build_world(seed: int, n_users: int, n_titles: int) -> World:
    """Users and titles drawn from ``seed`` (the same seed and sizes give the same world).

    Parameters
    ----------
    seed
        The simulation seed.
    n_users, n_titles
        How many of each (at least 1).

    Raises
    ------
    ValueError
        When a size is below 1.

    Examples
    --------
    >>> world = build_world(seed=42, n_users=3, n_titles=4)
    >>> [u.user_id for u in world.users], world.titles[0].title_id
    (['u-000000', 'u-000001', 'u-000002'], 't-00000')
    >>> build_world(42, 3, 4) == world
    True
    """
    if n_users < 1 or n_titles < 1:
        raise ValueError(
            f"the world needs at least 1 user and 1 title, got {n_users} users "
            f"and {n_titles} titles"
        )
    rng = random.Random(f"streamproc.simulate:{seed}:world")
    titles = _make_titles(rng, n_titles)
    by_genre: list[list[int]] = [[] for _ in GENRES]
    for i, title in enumerate(titles):
        by_genre[title.genre_index].append(i)
    has_titles = [bool(members) for members in by_genre]
    users = tuple(_make_user(rng, i, has_titles) for i in range(n_users))
    return World(
        seed=seed,
        users=users,
        titles=tuple(titles),
        titles_by_genre=tuple(tuple(m) for m in by_genre),
        title_cumulative=tuple(_cum([titles[i].popularity for i in m]) for m in by_genre),
    )
