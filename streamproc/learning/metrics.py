"""Prequential (test-then-train) metrics of one model: overall and over a recent window.

Every resolved label first scores the prediction that was served for it, then the model
learns from it; so the metrics measure what users of the predictions saw. Each metric name
gives two values: ``<name>`` over every label and ``<name>_recent`` over the last
``window`` labels (River's ``RollingROCAUC`` and ``utils.Rolling``).

The overall ROC AUC is :class:`HistogramROCAUC`, not River's ``ROCAUC``: River's default
of 10 thresholds makes a coarse trapezoid, and more thresholds cost a confusion-matrix
update each per label; counting labels in 1,000 score bins is O(1) per label and within
about 1e-3 of the exact AUC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from river import metrics, utils

from streamproc.learning.errors import ModelSpecError

__all__ = ["METRICS", "HistogramROCAUC", "PrequentialMetrics"]


class HistogramROCAUC:
    """ROC AUC over scores in [0, 1] from per-bin counts of positives and negatives.

    Ties within a bin count one half, as in the Mann-Whitney statistic.

    Parameters
    ----------
    n_bins
        Number of equal-width score bins.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> auc = HistogramROCAUC()
    >>> for _ in range(2000):
    ...     y = rng.random() < 0.5
    ...     auc.update(y, min(max(rng.gauss(0.6 if y else 0.4, 0.2), 0.0), 1.0))
    >>> round(auc.get(), 2)
    0.76
    """

    def __init__(self, n_bins: int = 1000) -> None:
        self.n_bins = n_bins
        self._pos = [0.0] * n_bins
        self._neg = [0.0] * n_bins

    def _bin(self, y_pred: float) -> int:
        return min(max(int(y_pred * self.n_bins), 0), self.n_bins - 1)

    def update(self, y_true: bool, y_pred: float, w: float = 1.0) -> None:
        """Count one scored label."""
        counts = self._pos if y_true else self._neg
        counts[self._bin(y_pred)] += w

    def revert(self, y_true: bool, y_pred: float, w: float = 1.0) -> None:
        """Undo :meth:`update`."""
        self.update(y_true, y_pred, -w)

    def get(self) -> float:
        """The AUC; 0.5 until both classes were seen."""
        total_pos, total_neg = sum(self._pos), sum(self._neg)
        if total_pos <= 0.0 or total_neg <= 0.0:
            return 0.5
        below, area = 0.0, 0.0
        for pos, neg in zip(self._pos, self._neg, strict=True):
            area += pos * (below + 0.5 * neg)
            below += neg
        return area / (total_pos * total_neg)


def _rolling_roc_auc(window: int) -> Any:
    rolling_roc_auc: Any = metrics.RollingROCAUC  # untyped in river
    return rolling_roc_auc(window_size=window)


def _rolling(cls: type) -> Callable[[int], Any]:
    def make(window: int) -> Any:
        return utils.Rolling(cls, window_size=window)

    return make


#: Metric name -> (overall metric factory, recent-window metric factory).
METRICS: dict[str, tuple[Callable[[], Any], Callable[[int], Any]]] = {
    "roc_auc": (HistogramROCAUC, _rolling_roc_auc),
    "log_loss": (metrics.LogLoss, _rolling(metrics.LogLoss)),
    "mae": (metrics.MAE, _rolling(metrics.MAE)),
    "rmse": (metrics.RMSE, _rolling(metrics.RMSE)),
}


class PrequentialMetrics:
    """The metrics of one model, overall and over the last ``window`` labels.

    Parameters
    ----------
    names
        Metric names from :data:`METRICS` (``roc_auc``, ``log_loss``, ``mae``, ``rmse``).
    window
        Number of most recent labels the ``*_recent`` values cover.

    Raises
    ------
    ModelSpecError
        For an unknown metric name.

    Examples
    --------
    >>> m = PrequentialMetrics(("mae",), window=2)
    >>> for y, p in ((1.0, 0.0), (0.0, 0.5), (1.0, 1.0)):
    ...     m.update(y, p)
    >>> m.get()
    {'labels': 3.0, 'mae': 0.5, 'mae_recent': 0.25}
    """

    def __init__(self, names: Sequence[str], window: int = 1000) -> None:
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ModelSpecError(
                f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(METRICS))}"
            )
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.names = tuple(names)
        self.window = window
        self.labels = 0
        self._metrics: list[tuple[str, Any, Any]] = [
            (name, METRICS[name][0](), METRICS[name][1](window)) for name in self.names
        ]

    def update(self, y_true: Any, y_pred: float) -> None:
        """Score one served prediction against its label."""
        self.labels += 1
        for _, overall, recent in self._metrics:
            overall.update(y_true, y_pred)
            recent.update(y_true, y_pred)

    def get(self) -> dict[str, float]:
        """``{"labels": n, "<name>": overall, "<name>_recent": window}`` for each metric."""
        out = {"labels": float(self.labels)}
        for name, overall, recent in self._metrics:
            out[name] = float(overall.get())
            out[name + "_recent"] = float(recent.get())
        return out
