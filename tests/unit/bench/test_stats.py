"""Percentiles and the median / min-max summary of the benchmark figures."""

from __future__ import annotations

import random

import numpy as np
import pytest

from benchmarks.stats import Summary, percentile, percentiles, summarize


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 99.9, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    rng = random.Random(q)
    values = [rng.expovariate(1 / 50) for _ in range(rng.randint(1, 400))]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_known_values() -> None:
    assert percentile([5.0], 99) == 5.0
    assert percentile([4, 1, 3, 2], 50) == 2.5  # order does not matter
    assert percentile([10, 20, 30, 40, 50], 0) == 10
    assert percentile([10, 20, 30, 40, 50], 100) == 50
    assert percentiles(list(range(101))) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def test_percentile_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"within \[0, 100\], got 101"):
        percentile([1.0], 101)


def test_summarize_median_and_range() -> None:
    s = summarize([1200.0, 900.0, 1000.0])
    assert s == Summary(1000.0, 900.0, 1200.0, (1200.0, 900.0, 1000.0))
    assert s.runs == 3
    assert s.as_dict() == {
        "median": 1000.0,
        "min": 900.0,
        "max": 1200.0,
        "runs": 3,
        "values": [1200.0, 900.0, 1000.0],
    }


def test_summarize_even_count_and_missing_runs() -> None:
    s = summarize([4.0, None, 1.0, 2.0, 3.0])
    assert s is not None
    assert (s.median, s.low, s.high, s.runs) == (2.5, 1.0, 4.0, 4)
    assert summarize([]) is None
    assert summarize([None]) is None
