"""Drift scenarios: registered, deterministic, identical to stationary before the onset."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from streamproc.config import Settings
from streamproc.simulate import SimParams, simulate_events
from streamproc.simulate.scenarios import (
    TasteDriftScenario,
    TasteShiftScenario,
    ThrottledCdnScenario,
    register_variant,
)
from streamproc.simulate.truth import SCENARIOS, TruthCoefficients, make_scenario

START = 1_700_000_000_000


def _values(settings: Settings, scenario: str, n: int = 4000, **kw: object) -> list[bytes]:
    params = SimParams(n_events=n, seed=7, start_time_ms=START, scenario=scenario, fmt="json", **kw)  # type: ignore[arg-type]
    return [r.value for r in simulate_events(params, settings)]


def test_registered() -> None:
    for name, cls in [
        ("taste_shift", TasteShiftScenario),
        ("taste_drift", TasteDriftScenario),
        ("throttled_cdn", ThrottledCdnScenario),
    ]:
        assert isinstance(make_scenario(name), cls)
        assert make_scenario(name).name == name
    # Every drift name sorts after "stationary": the unknown-name message still starts so.
    assert sorted(SCENARIOS)[0] == "stationary"
    with pytest.raises(ValueError, match="unknown scenario 'drift'; known: stationary, "):
        make_scenario("drift")


def test_stationary_output_unchanged(settings: Settings) -> None:
    # The same digest as before the drift scenarios existed (checked against HEAD's code).
    digest = hashlib.sha256()
    params = SimParams(
        n_events=5000, seed=7, start_time_ms=START, invalid_fraction=0.05, duplicate_fraction=0.02
    )
    for record in simulate_events(params, settings):
        digest.update(record.value)
    assert digest.hexdigest() == (
        "383a9a4968b8bb9ba142384052745304458145d70ec179de6615ac7ce3b0c002"
    )


@pytest.mark.parametrize("base", ["taste_shift", "taste_drift", "throttled_cdn"])
def test_deterministic_and_stationary_before_the_onset(settings: Settings, base: str) -> None:
    name = register_variant(base, onset=2000)
    first = _values(settings, name)
    assert first == _values(settings, name)
    stationary = _values(settings, "stationary")
    same = 0
    while same < len(first) and first[same] == stationary[same]:
        same += 1
    # Sessions planned before index 2000 are untouched; the stream interleaves sessions, so
    # the first changed event comes somewhat before index 2000.
    assert 0 < same < 2000
    assert first != stationary


def test_taste_shift_turns_tastes_round() -> None:
    s = TasteShiftScenario(onset=10)
    assert s.affinity_at(1.2, 0, 9) == 1.2 and s.affinity_at(1.2, 0, 10) == -1.2
    assert s.coefficients_at(10) == TruthCoefficients()


def test_taste_drift_blends() -> None:
    s = TasteDriftScenario(onset=100, span=100)
    assert [round(s.affinity_at(1.0, 0, i), 2) for i in (99, 100, 150, 200, 10**6)] == [
        1.0,
        1.0,
        0.0,
        -1.0,
        -1.0,
    ]


def test_throttled_cdn_shifts_the_network_and_rebuffering(settings: Settings) -> None:
    name = register_variant("throttled_cdn", onset=2000)
    events = [orjson.loads(v) for v in _values(settings, name, n=8000)]
    base = [orjson.loads(v) for v in _values(settings, "stationary", n=8000)]

    def median_bw(evs: list[Any]) -> float:
        values = sorted(
            e["network"]["bandwidth_kbps"] for e in evs[2500:] if e["event_type"] == "play"
        )
        return float(values[len(values) // 2])

    assert median_bw(events) < 0.5 * median_bw(base)


def test_register_variant_is_idempotent() -> None:
    a = register_variant("taste_drift", onset=5, span=10)
    assert a == register_variant("taste_drift", span=10, onset=5) == "taste_drift(onset=5, span=10)"
    assert repr(make_scenario(a)) == "TasteDriftScenario(onset=5, span=10)"
    with pytest.raises(ValueError, match="unknown drift scenario 'nope'"):
        register_variant("nope")
