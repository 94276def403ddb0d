"""Model lifecycle actions (manual rollback and promotion): a control record plus an audit event.

An action writes the control record ``control/<ns>/<model>`` on the snapshots topic (every
worker follows it within seconds) and a ``DriftSignal`` of kind ``lifecycle`` on the
drift-signals topic, the audit log of the model lifecycle (``partition`` null: the request).
Each worker then records what it did on each partition it owns as another signal with the
same action and that partition (``details["result"]``: switched, already_serving or
no_snapshot).
"""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from typing import Any, Literal

import orjson

from streamproc.config import Settings
from streamproc.emit.encode import Encoder
from streamproc.errors import KafkaError, StreamprocError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import client_config
from streamproc.registry.store import control_key, list_snapshot_infos

__all__ = ["set_serving_version"]


def set_serving_version(
    settings: Settings,
    model: str,
    version: int,
    *,
    action: Literal["manual_rollback", "manual_promote"] = "manual_rollback",
    note: str = "",
) -> dict[str, Any]:
    """Make ``version`` of ``model`` the one served on every partition that has it.

    Raises
    ------
    StreamprocError
        If no snapshot of that model version exists.
    """
    from confluent_kafka import Producer

    schemas = load_schemas(settings.schemas_path)
    infos = [
        i
        for i in list_snapshot_infos(settings, schemas)
        if i.namespace == settings.model_namespace and i.model == model
    ]
    versions = sorted({i.version for i in infos})
    if version not in versions:
        known = ", ".join(f"v{v}" for v in versions) or "none"
        raise StreamprocError(
            f"model {model!r} has no snapshot of version {version} in namespace "
            f"{settings.model_namespace!r} (versions: {known}); see `streamproc models list`"
        )
    partitions = sorted({i.partition for i in infos if i.version == version})
    now = int(time.time() * 1000)
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    signal_id = str(uuid.uuid4())
    # The id tells the workers this record from an earlier one naming the same version.
    control = {
        "serve_version": version,
        "action": action,
        "at": now,
        "by": who,
        "note": note,
        "id": signal_id,
    }
    signal = {
        "signal_id": signal_id,
        "model": model,
        "model_version": version,
        "partition": None,
        "detector": "manual",
        "kind": "lifecycle",
        "feature": None,
        "statistic": None,
        "threshold": None,
        "reference_size": None,
        "recent_size": None,
        "detected_at": now,
        "input_offset": None,
        "severity": "info",
        "action": action,
        "details": {
            "to_version": str(version),
            "by": who,
            "note": note,
            "partitions": ",".join(map(str, partitions)),
        },
    }
    encoder = Encoder.for_record(schemas, "DriftSignal", settings.output_format)
    producer = Producer(client_config(settings, **{"enable.idempotence": True, "acks": "all"}))
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(
        settings.topic_snapshots,
        key=control_key(settings.model_namespace, model).encode(),
        value=orjson.dumps(control),
        on_delivery=on_delivery,
    )
    producer.produce(
        settings.topic_drift,
        key=model.encode(),
        value=encoder.encode(signal),
        on_delivery=on_delivery,
    )
    left = producer.flush(30.0)
    if left or errors:
        raise KafkaError(f"could not record the {action}: {errors or f'{left} undelivered'}")
    return {"model": model, "version": version, "partitions": partitions, "action": action}
