"""The simulated world and the ground-truth formulas (no I/O)."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from streamproc.simulate.truth import (
    StationaryScenario,
    TruthCoefficients,
    expected_rebuffer_ratio,
    make_scenario,
    p_complete,
    rating_score,
)
from streamproc.simulate.world import (
    CDN_QUALITY,
    CONNECTION_TYPES,
    DEVICE_TYPES,
    GENRES,
    REGIONS,
    build_world,
)


def test_same_seed_same_world_and_other_seed_other_world() -> None:
    assert build_world(7, 50, 40) == build_world(7, 50, 40)
    assert build_world(7, 50, 40) != build_world(8, 50, 40)


def test_world_profiles_are_in_range() -> None:
    world = build_world(3, 300, 200)
    assert len(world.users) == 300 and len(world.titles) == 200
    assert len({u.user_id for u in world.users}) == 300
    assert len({t.title_id for t in world.titles}) == 200
    for user in world.users:
        assert len(user.affinity) == len(GENRES)
        assert user.device_type in DEVICE_TYPES
        assert user.connection_type in CONNECTION_TYPES
        assert user.region in REGIONS
        assert user.cdn in CDN_QUALITY
        assert user.bandwidth_kbps > 0 and user.rtt_ms > 0
    for title in world.titles:
        assert title.genre == GENRES[title.genre_index]
        assert 20 * 60 <= title.duration_s < 151 * 60
        assert 1950 <= title.release_year <= 2025
    zs = [t.popularity_z for t in world.titles]
    assert statistics.mean(zs) == pytest.approx(0.0, abs=1e-9)
    assert statistics.pstdev(zs) == pytest.approx(1.0, abs=1e-9)


def test_titles_are_picked_only_from_genres_that_have_titles() -> None:
    world = build_world(11, 20, 2)  # at most 2 of the 10 genres have titles
    rng = random.Random(0)
    picked = {world.pick_title(rng, user) for user in world.users for _ in range(20)}
    assert picked <= {0, 1}


def test_world_needs_users_and_titles() -> None:
    with pytest.raises(ValueError, match="at least 1 user and 1 title, got 0 users"):
        build_world(1, 0, 10)


def _ratio(**changes: Any) -> float:
    args: dict[str, Any] = dict(
        bandwidth_kbps=20_000.0,
        rtt_ms=30.0,
        connection_type="wifi",
        cdn_quality=0.95,
        bitrate_kbps=5800,
    )
    return expected_rebuffer_ratio(TruthCoefficients(), **{**args, **changes})


def _p(**changes: Any) -> float:
    args: dict[str, Any] = dict(
        affinity=0.0,
        popularity_z=0.0,
        rebuffer_ratio=0.01,
        bitrate_kbps=4300,
        device_type="tv",
        duration_s=5400.0,
        engagement=0.0,
    )
    return p_complete(TruthCoefficients(), **{**args, **changes})


def test_rebuffering_grows_with_load_rtt_and_worse_cdn() -> None:
    ratio = _ratio()
    assert 0 < ratio < TruthCoefficients().rebuffer_max
    assert _ratio(bitrate_kbps=16000) > ratio
    assert _ratio(bandwidth_kbps=5_000.0) > ratio
    assert _ratio(rtt_ms=300.0) > ratio
    assert _ratio(cdn_quality=0.55) > ratio
    assert _ratio(connection_type="ethernet") < ratio


def test_completion_grows_with_affinity_and_falls_with_rebuffering() -> None:
    p = _p()
    assert _p(affinity=1.0) > p
    assert _p(popularity_z=1.0) > p
    assert _p(rebuffer_ratio=0.1) < p
    assert _p(device_type="mobile") < p
    assert _p(duration_s=9000.0) < p


def test_ratings_stay_within_one_to_five() -> None:
    rng = random.Random(2)
    scores = {
        rating_score(rng.gauss(0, 2), rng.random() < 0.5, rng.random() * 0.3, rng.gauss(0, 2))
        for _ in range(2000)
    }
    assert scores == {1, 2, 3, 4, 5}


def test_scenarios() -> None:
    scenario = make_scenario("stationary")
    assert isinstance(scenario, StationaryScenario)
    assert scenario.coefficients_at(0) is scenario.coefficients_at(10**9)
    assert scenario.affinity_at(0.7, 3, 5000) == 0.7
    assert scenario.network_at(1000.0, 40.0, 5000) == (1000.0, 40.0)
    with pytest.raises(ValueError, match="unknown scenario 'drift'; known: stationary"):
        make_scenario("drift")
