"""Drift detectors: golden detection indices on seeded streams, names, pickling."""

from __future__ import annotations

import pickle
import random

import pytest

from streamproc.drift.detectors import DETECTORS, DriftDetector, RiverDetector, make_detector


def _errors() -> list[float]:
    # A 0/1 error stream whose rate goes from 0.2 to 0.5 at index 2000.
    rng = random.Random(42)
    return [float(rng.random() < (0.2 if i < 2000 else 0.5)) for i in range(4000)]


@pytest.mark.parametrize(
    ("name", "golden"),
    [
        ("adwin", [2111]),
        ("page_hinkley", [2155]),
        ("ddm", [2122]),
        ("hddm_a", [2094, 2254]),
        ("hddm_w", [2068, 3062, 3705]),
    ],
)
def test_detector_fires_at_golden_index(name: str, golden: list[int]) -> None:
    detector = make_detector(name)
    assert isinstance(detector, DriftDetector)
    assert [i for i, x in enumerate(_errors()) if detector.update(x)] == golden


def test_eddm_is_noisy_on_this_stream() -> None:
    # EDDM reacts to the distance between errors: at a 20 % error rate it fires early and
    # often, which is why the monitor defaults to ADWIN.
    detector = make_detector("eddm")
    assert [i for i, x in enumerate(_errors()) if detector.update(x)][:3] == [160, 324, 528]


def test_adwin_on_a_real_valued_stream() -> None:
    rng = random.Random(42)
    stream = [rng.gauss(0.2, 0.05) for _ in range(1000)] + [
        rng.gauss(0.5, 0.05) for _ in range(1000)
    ]
    detector = make_detector("adwin")
    assert [i for i, x in enumerate(stream) if detector.update(x)] == [1055]
    assert detector.increased and detector.drift_detected is False


def test_a_decrease_is_not_an_increase() -> None:
    rng = random.Random(1)
    detector = make_detector("adwin")
    hits = [
        detector.increased
        for i in range(3000)
        if detector.update(rng.gauss(0.6 if i < 1500 else 0.2, 0.05))
    ]
    assert hits and not any(hits)


def test_warnings_only_from_binary_detectors() -> None:
    ddm = make_detector("ddm")
    warned = False
    for x in _errors():
        ddm.update(x)
        warned = warned or ddm.warning_detected
    assert warned
    adwin = make_detector("adwin")
    for x in _errors():
        adwin.update(x)
        assert not adwin.warning_detected


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_pickle_round_trip_keeps_state(name: str) -> None:
    detector = make_detector(name)
    errors = _errors()
    for x in errors[:2050]:
        detector.update(x)
    copy = pickle.loads(pickle.dumps(detector))
    rest = errors[2050:]
    assert [copy.update(x) for x in rest] == [detector.update(x) for x in rest]


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown drift detector 'kswin'; known: adwin, ddm"):
        RiverDetector("kswin")


def test_page_hinkley_watches_increases_by_default() -> None:
    assert make_detector("page_hinkley").params == {"mode": "up"}
    assert repr(make_detector("adwin", delta=0.01)) == "RiverDetector('adwin', delta=0.01)"
