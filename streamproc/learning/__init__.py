"""Stage 3: predict at the decision, learn when the label arrives (test-then-train).

Input: ViewingEvent (one partition's, in offset order). Output: PredictionOut per model at
each ``play``; prequential metrics; model states to snapshot.

- :mod:`.specs`      ``MODEL_SPECS``: name -> task, River model factory, features, label, metrics
- :mod:`.metrics`    prequential metrics per model, overall and over a recent window
- :mod:`.partition`  ``PartitionLearner``: the interface the model agent calls
- :mod:`.evaluate`   the simulator through the learners, measured against the oracle
- :mod:`.errors`     ``ModelError`` (dead-letter reason ``model_error``), ``ModelSpecError``
"""

from __future__ import annotations

from streamproc.learning.errors import ModelError, ModelSpecError
from streamproc.learning.metrics import METRICS, HistogramROCAUC, PrequentialMetrics
from streamproc.learning.partition import LabelOut, PartitionLearner, PredictionOut
from streamproc.learning.specs import (
    MODEL_SPECS,
    ModelSpec,
    get_model_specs,
    register_model_spec,
)

__all__ = [
    "METRICS",
    "MODEL_SPECS",
    "HistogramROCAUC",
    "LabelOut",
    "ModelError",
    "ModelSpec",
    "ModelSpecError",
    "PartitionLearner",
    "PredictionOut",
    "PrequentialMetrics",
    "get_model_specs",
    "register_model_spec",
]
