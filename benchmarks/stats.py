"""Percentiles and the median / min-max summary every figure of the benchmark is given as."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Summary", "percentile", "percentiles", "summarize"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values``, linear between closest ranks (numpy's default).

    Parameters
    ----------
    values
        At least one finite number, in any order.
    q
        Percent, 0 to 100.

    Raises
    ------
    ValueError
        When ``values`` is empty or ``q`` is outside [0, 100].

    Examples
    --------
    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10, 20, 30, 40, 50], 95)
    48.0
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100], got {q!r}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def percentiles(values: Sequence[float], qs: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of ``values`` (keys ``p`` + q as written).

    >>> percentiles([1.0, 2.0, 3.0], (50,))
    {'p50': 2.0}
    """
    return {f"p{q:g}": percentile(values, q) for q in qs}


@dataclass(frozen=True, slots=True)
class Summary:
    """A figure measured in several runs: the median and the range."""

    median: float
    low: float
    high: float
    values: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.values)

    def as_dict(self) -> dict[str, object]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "runs": self.runs,
            "values": list(self.values),
        }


def summarize(values: Iterable[float | None]) -> Summary | None:
    """Median, min and max of the measured values (``None`` = not measured in that run).

    Returns None when no run measured the figure.

    >>> summarize([3.0, 1.0, 2.0])
    Summary(median=2.0, low=1.0, high=3.0, values=(3.0, 1.0, 2.0))
    >>> summarize([None, None]) is None
    True
    """
    measured = tuple(float(v) for v in values if v is not None)
    if not measured:
        return None
    return Summary(statistics.median(measured), min(measured), max(measured), measured)
