"""4. Drift: error and input streams -> ``DriftSignal | None``, and the response to it.

A pure library (no Kafka, no agents); the model agent calls it per event of a partition.

- :mod:`.detectors`  ``float -> bool`` change detectors over ``river.drift`` by name (ADWIN by
  default; Page-Hinkley; DDM, EDDM, HDDM_A, HDDM_W on 0/1 errors); picklable.
- :mod:`.data`       data drift on the inputs (bandwidth, RTT, bitrate, device and event-type
  mix): PSI of a reference window against a recent window, every K events, with a threshold
  derived from a target false-alarm rate.
- :mod:`.monitor`    :class:`DriftMonitor`: one model on one partition; concept drift on the
  prequential error, label drift on the labels, data drift; DriftSignal dicts
  (``schemas/drift_signal/v1.avsc``), one per episode.
- :mod:`.response`   :class:`ResponsePolicy`: challenger, shadow evaluation, promotion,
  guarded rollback around a :class:`~streamproc.learning.partition.PartitionLearner` slot.
- :mod:`.partition`  :class:`PartitionDrift`: learner + monitors + policies of one partition
  (what the model agent runs per partition), manual controls, its snapshot state.
- :mod:`.report`     ``streamproc drift-report``: delays, false alarms, recovery on the
  simulator's drift scenarios and on River's synthetic drift streams.
"""

from __future__ import annotations

from streamproc.drift.data import DataDriftMonitor
from streamproc.drift.detectors import DriftDetector, RiverDetector, make_detector
from streamproc.drift.monitor import DriftMonitor, make_signal
from streamproc.drift.partition import PartitionDrift
from streamproc.drift.response import ResponsePolicy

__all__ = [
    "DataDriftMonitor",
    "DriftDetector",
    "DriftMonitor",
    "PartitionDrift",
    "ResponsePolicy",
    "RiverDetector",
    "make_detector",
    "make_signal",
]
