"""Prequential metrics and the exact AUC / error functions of the evaluation."""

from __future__ import annotations

import pickle
import random

import pytest

from streamproc.learning import HistogramROCAUC, ModelSpecError, PrequentialMetrics
from streamproc.learning.evaluate import roc_auc


def test_histogram_auc_matches_the_exact_auc() -> None:
    rng = random.Random(3)
    ys, ps = [], []
    auc = HistogramROCAUC()
    for _ in range(5_000):
        y = rng.random() < 0.4
        p = min(max(rng.gauss(0.55 if y else 0.45, 0.15), 0.0), 1.0)
        ys.append(y)
        ps.append(p)
        auc.update(y, p)
    assert auc.get() == pytest.approx(roc_auc(ys, ps), abs=2e-3)
    for y, p in zip(ys[:100], ps[:100], strict=True):
        auc.revert(y, p)
    assert auc.get() == pytest.approx(roc_auc(ys[100:], ps[100:]), abs=2e-3)


def test_auc_without_both_classes_is_one_half() -> None:
    auc = HistogramROCAUC()
    auc.update(True, 0.9)
    assert auc.get() == 0.5
    assert roc_auc([True, True], [0.1, 0.2]) == 0.5


def test_prequential_metrics_overall_and_recent() -> None:
    m = PrequentialMetrics(("roc_auc", "log_loss"), window=4)
    for y, p in [(True, 0.9), (False, 0.2), (True, 0.3), (False, 0.8)] * 3:
        m.update(y, p)
    got = m.get()
    assert got["labels"] == 12
    assert set(got) == {"labels", "roc_auc", "roc_auc_recent", "log_loss", "log_loss_recent"}
    assert got["roc_auc"] == pytest.approx(0.75)
    assert got["log_loss"] == pytest.approx(got["log_loss_recent"])
    clone = pickle.loads(pickle.dumps(m))
    assert clone.get() == got


def test_unknown_metric() -> None:
    with pytest.raises(ModelSpecError, match="unknown metric"):
        PrequentialMetrics(("f1",))
