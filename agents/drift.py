"""Drift signals out of the model agent, and manual controls into it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from streamproc.config import Settings
from streamproc.drift.monitor import Action
from streamproc.drift.partition import VERSION_ACTIONS, PartitionDrift
from streamproc.emit.encode import Encoder
from streamproc.errors import SnapshotError
from streamproc.ingest.schemas import SchemaSet
from streamproc.kafka.clients import client_config
from streamproc.metrics import StreamprocMetrics
from streamproc.registry.signing import Signer
from streamproc.registry.snapshots import decode_snapshot, snapshot_key
from streamproc.registry.store import CONTROL_PREFIX, control_token

if TYPE_CHECKING:
    from agents.app import WorkerApp

__all__ = ["ControlFollower", "SignalSink", "describe_signal"]

logger = logging.getLogger(__name__)

_MANUAL_ACTIONS: tuple[Action, ...] = ("manual_promote", "manual_rollback")


def describe_signal(signal: Mapping[str, Any]) -> str:
    """One log line's worth of a DriftSignal dict.

    >>> describe_signal({"model": "qoe", "partition": 0, "model_version": 2, "kind": "data",
    ...     "detector": "psi", "feature": "rtt_ms", "severity": "drift", "action": "none",
    ...     "input_offset": 17, "details": {}})
    'qoe p0 v2: data/psi/rtt_ms drift, action none, offset 17'
    """
    what = f"{signal['kind']}/{signal['detector']}"
    if signal.get("feature"):
        what += f"/{signal['feature']}"
    event = signal.get("details", {}).get("event")
    action = signal["action"] if event is None else f"{signal['action']} ({event})"
    return (
        f"{signal['model']} p{signal['partition']} v{signal['model_version']}: {what} "
        f"{signal['severity']}, action {action}, offset {signal['input_offset']}"
    )


class SignalSink:
    """DriftSignal dicts -> the drift-signals topic (key: model), the metrics and the log."""

    def __init__(
        self, app: WorkerApp, settings: Settings, metrics: StreamprocMetrics, schemas: SchemaSet
    ) -> None:
        self.metrics = metrics
        # Checked against the schema: signals are rare, and a bad one is a bug to surface.
        self.encoder = Encoder.for_record(schemas, "DriftSignal", settings.output_format)
        self.sender = app.sender
        self.topic = settings.topic_drift
        self.records_out = metrics.records_out.labels(topic=settings.topic_drift)

    async def send(self, signals: Sequence[Mapping[str, Any]]) -> None:
        """Send, count and log each signal; set the version gauge after a version change."""
        for signal in signals:
            model = signal["model"]
            self.sender.send(self.topic, self.encoder.encode(signal), model.encode())
            self.records_out.inc()
            self.metrics.drift_signals.labels(model=model, kind=signal["kind"]).inc()
            logger.info("drift signal %s", describe_signal(signal))
            if signal["action"] in VERSION_ACTIONS and signal["partition"] is not None:
                self.metrics.model_version.labels(
                    model=model, partition=str(signal["partition"])
                ).set(signal["model_version"])


class ControlFollower:
    """Reads the snapshots topic: the latest control record per model, and model snapshots.

    :meth:`poll` (blocking: run it in a thread) reads on to the topic's end; :meth:`apply`
    then applies every control record a partition has not applied yet, through
    :meth:`PartitionDrift.apply_control` (the same path as a promotion), once per record
    and partition.
    """

    def __init__(
        self,
        settings: Settings,
        schemas: SchemaSet,
        signer: Signer,
        on_refused: Callable[[str, SnapshotError], None],
        *,
        catch_up_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.schemas = schemas
        self.signer = signer
        self.on_refused = on_refused
        self.catch_up_s = catch_up_s
        self._consumer: Any = None
        self._partitions: list[Any] = []
        self._controls: dict[str, dict[str, Any]] = {}
        self._raw_snapshots: dict[str, bytes] = {}

    def poll(self) -> dict[str, dict[str, Any]] | None:
        """Model -> its latest control record, once the topic is read to its end; else None.

        None means the end was not reached within ``catch_up_s`` (e.g. a long topic at
        start-up): a record read so far may be superseded by one not read yet, so nothing
        should be applied yet.
        """
        from confluent_kafka import Consumer, TopicPartition

        topic = self.settings.topic_snapshots
        if self._consumer is None:
            consumer = Consumer(
                client_config(
                    self.settings,
                    **{
                        "group.id": "streamproc-control",
                        "enable.auto.commit": False,
                        "auto.offset.reset": "earliest",
                    },
                )
            )
            meta = consumer.list_topics(topic, timeout=10.0)
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None:
                consumer.close()
                return None
            self._partitions = [TopicPartition(topic, p) for p in tmeta.partitions]
            consumer.assign([TopicPartition(topic, p, 0) for p in tmeta.partitions])
            self._consumer = consumer
        consumer = self._consumer
        marks = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=5.0, cached=False)
            for tp in self._partitions
        }
        deadline = time.monotonic() + self.catch_up_s
        prefix = f"{CONTROL_PREFIX}{self.settings.model_namespace}/"
        while True:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is not None or msg.key() is None:
                    continue
                key = msg.key().decode("utf-8", "replace")
                if key.startswith(prefix):
                    try:
                        control = orjson.loads(msg.value() or b"{}")
                    except orjson.JSONDecodeError:
                        logger.warning("ignoring malformed control record %s", key)
                        continue
                    if isinstance(control, dict):
                        self._controls[key[len(prefix) :]] = control
                elif not key.startswith(CONTROL_PREFIX) and msg.value():
                    self.add_snapshot(key, msg.value())
            positions = consumer.position(self._partitions)
            if all(
                tp.offset >= marks[tp.partition][1]
                or marks[tp.partition][0] >= marks[tp.partition][1]
                for tp in positions
            ):
                return dict(self._controls)
            if time.monotonic() > deadline:
                return None

    def add_snapshot(self, key: str, raw: bytes) -> None:
        """Keep a model snapshot record (unverified) a control record may name later."""
        parts = key.split("/")  # <ns>/<model>/<partition>/v<version>
        # Only model versions can be served: the shared and drift states are not kept.
        if len(parts) == 4 and not parts[1].startswith("_"):
            self._raw_snapshots[key] = raw

    def apply(
        self,
        controls: Mapping[str, Mapping[str, Any]],
        drifts: Mapping[int, PartitionDrift],
        next_offset: Mapping[int, int],
    ) -> dict[int, list[dict[str, Any]]]:
        """Apply the control records each partition has not applied; partition -> signals."""
        namespace = self.settings.model_namespace
        out: dict[int, list[dict[str, Any]]] = {}
        for partition, drift in list(drifts.items()):
            versions = drift.learner.versions
            for model, control in controls.items():
                version = control.get("serve_version")
                if not isinstance(version, int) or model not in versions:
                    continue
                token = control_token(control)
                if drift.controls_applied.get(model) == token:
                    continue
                state: object | None = None
                if versions[model] != version:
                    key = snapshot_key(namespace, model, partition, version)
                    state = self._model_state(key)
                action = control.get("action")
                at = control.get("at")
                common: dict[str, Any] = {
                    "token": token,
                    "action": action if action in _MANUAL_ACTIONS else "manual_rollback",
                    "at": at if isinstance(at, int) else 0,
                    "offset": next_offset.get(partition),
                    "details": {
                        "by": str(control.get("by", "")),
                        "note": str(control.get("note", "")),
                    },
                }
                try:
                    signal = drift.apply_control(model, version, state, **common)
                except SnapshotError as exc:
                    self.on_refused(snapshot_key(namespace, model, partition, version), exc)
                    signal = drift.apply_control(model, version, None, **common)
                if signal is not None:
                    out.setdefault(partition, []).append(signal)
        return out

    def _model_state(self, key: str) -> object | None:
        raw = self._raw_snapshots.get(key)
        if raw is None:
            logger.warning("no snapshot %s to serve", key)
            return None
        try:
            snap = decode_snapshot(raw, self.signer, self.schemas)
        except SnapshotError as exc:
            self.on_refused(key, exc)
            return None
        if snap.meta.key != key:
            self.on_refused(key, SnapshotError(f"key {key} does not match {snap.meta.key}"))
            return None
        state: object = snap.state
        return state
