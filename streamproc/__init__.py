"""streamproc: online machine learning on video-viewing event streams over Apache Kafka.

The stages, in the order an event flows through them:

1. ``streamproc.ingest``   bytes -> ViewingEvent: decode (Avro single-object, Confluent, JSON),
   resolve to the current schema, check data-quality rules, de-duplicate; or a DeadLetter.
2. ``streamproc.features`` ViewingEvent -> features (one function for predicting and learning).
3. ``streamproc.learning`` predict at the decision, learn when the label arrives.
4. ``streamproc.drift``    error and input streams -> drift signals.
5. ``streamproc.emit``     predictions, signals and dead letters -> Avro or JSON bytes.

Around them: ``streamproc.kafka`` (local Apache Kafka launcher, topics, clients),
``streamproc.simulate`` (a seeded viewing-session simulator with a hidden ground truth),
``streamproc.cli`` (the ``streamproc`` command) and ``agents/`` (the Faust app).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
