"""The project's six topics, declared once from the settings, and their idempotent creation.

=============  =========================  ==============================================
role           default name               policy
=============  =========================  ==============================================
input          ``viewing-events``         delete, ``retention_ms``
valid          ``viewing-events-valid``   delete, ``retention_ms``
dlq            ``viewing-events-dlq``     delete, ``dlq_retention_ms`` (kept longer)
predictions    ``predictions``            delete, ``retention_ms``
drift          ``drift-signals``          delete, ``retention_ms``
snapshots      ``model-snapshots``        compact, one partition (versions stay ordered)
=============  =========================  ==============================================

With a replication factor of 3 or more every topic gets ``min.insync.replicas=2``, so
``acks=all`` writes survive the loss of one broker.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from confluent_kafka import KafkaError as _RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streamproc.config import Settings
from streamproc.errors import AuthorizationError, BrokerUnavailableError, KafkaError
from streamproc.kafka.clients import (
    START_HINT,
    client_config,
    quiet_client_logger,
    wait_for_broker,
)
from streamproc.kafka.security import ACL_HINT, describe_security

if TYPE_CHECKING:
    from confluent_kafka.admin._metadata import ClusterMetadata

__all__ = [
    "TopicOutcome",
    "TopicSpec",
    "TopicStatus",
    "delete_topics",
    "ensure_topics",
    "topic_specs",
    "topic_status",
]

logger = logging.getLogger(__name__)

TopicOutcome = Literal["created", "exists"]

SNAPSHOT_SEGMENT_MS = 10 * 60 * 1000  # roll segments often: only closed segments are compacted
SNAPSHOT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a pickled model can exceed the 1 MB default


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How one topic is created.

    Parameters
    ----------
    name
        The topic name.
    partitions
        Number of partitions.
    replication_factor
        Replicas of each partition.
    config
        Topic configuration (``cleanup.policy``, ``retention.ms``, ...), string values.
    role
        The project's name for the topic (``input``, ``dlq``, ...; empty for extra topics).
    """

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    role: str = ""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The six topics of the project, named and sized from ``settings``, in flow order.

    Examples
    --------
    >>> from streamproc.config import Settings
    >>> [(s.role, s.name) for s in topic_specs(Settings())][:2]
    [('input', 'viewing-events'), ('valid', 'viewing-events-valid')]
    """
    rf = settings.replication_factor
    durability = {"min.insync.replicas": "2"} if rf >= 3 else {}

    def delete(retention_ms: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(retention_ms), **durability}

    compact = {
        "cleanup.policy": "compact",
        "segment.ms": str(SNAPSHOT_SEGMENT_MS),
        "min.cleanable.dirty.ratio": "0.1",
        "delete.retention.ms": str(24 * 3600 * 1000),
        "max.message.bytes": str(SNAPSHOT_MAX_MESSAGE_BYTES),
        **durability,
    }
    n = settings.partitions
    return [
        TopicSpec(settings.topic_input, n, rf, delete(settings.retention_ms), "input"),
        TopicSpec(settings.topic_valid, n, rf, delete(settings.retention_ms), "valid"),
        TopicSpec(settings.topic_dlq, n, rf, delete(settings.dlq_retention_ms), "dlq"),
        TopicSpec(settings.topic_predictions, n, rf, delete(settings.retention_ms), "predictions"),
        TopicSpec(settings.topic_drift, n, rf, delete(settings.retention_ms), "drift"),
        TopicSpec(settings.topic_snapshots, 1, rf, compact, "snapshots"),
    ]


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """A declared topic and what the cluster has of it."""

    spec: TopicSpec
    exists: bool
    partitions: int | None
    replication_factor: int | None


def _metadata(admin: AdminClient, settings: Settings, timeout: float) -> ClusterMetadata:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailableError(
            f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout:g} s "
            f"({exc.args[0] if exc.args else exc}); {START_HINT}"
        ) from exc


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings, logger=quiet_client_logger()))


def _status(spec: TopicSpec, metadata: ClusterMetadata) -> TopicStatus:
    topic = metadata.topics.get(spec.name)
    if topic is None or topic.error is not None or not topic.partitions:
        return TopicStatus(spec, False, None, None)
    rf = max(len(p.replicas) for p in topic.partitions.values())
    return TopicStatus(spec, True, len(topic.partitions), rf)


def topic_status(
    settings: Settings, specs: Sequence[TopicSpec] | None = None, *, timeout: float = 10.0
) -> list[TopicStatus]:
    """Whether each declared topic exists, with its actual partitions and replication factor.

    Raises
    ------
    BrokerUnavailableError
        If the cluster does not answer within ``timeout`` seconds.
    """
    specs = topic_specs(settings) if specs is None else specs
    wait_for_broker(settings, timeout)  # a refused login or TLS handshake: say so at once
    metadata = _metadata(_admin(settings), settings, timeout)
    return [_status(spec, metadata) for spec in specs]


def ensure_topics(
    settings: Settings, specs: Sequence[TopicSpec] | None = None, *, timeout: float = 30.0
) -> list[tuple[str, TopicOutcome]]:
    """Create the declared topics that are missing; idempotent.

    An existing topic is left as it is; a warning is logged when its partition count or
    replication factor differs from the spec (Kafka cannot shrink a topic, and growing it
    moves keys between partitions).

    Parameters
    ----------
    settings
        The cluster, and the topics when ``specs`` is None.
    specs
        Topics to ensure; default :func:`topic_specs`.
    timeout
        Seconds for the metadata request and for the creation.

    Returns
    -------
    list of (name, outcome)
        In spec order; outcome is ``"created"`` or ``"exists"``.

    Raises
    ------
    BrokerUnavailableError
        If no broker answers at ``settings.bootstrap_servers``.
    AuthenticationError
        If the broker refuses the login or the TLS handshake.
    AuthorizationError
        If the ACLs do not let the user create a missing topic.
    KafkaError
        If the cluster has fewer brokers than a replication factor, or a creation fails.
    """
    specs = topic_specs(settings) if specs is None else specs
    wait_for_broker(settings, timeout)  # a refused login or TLS handshake: say so at once
    admin = _admin(settings)
    metadata = _metadata(admin, settings, timeout)
    outcomes: dict[str, TopicOutcome] = {}
    missing: list[TopicSpec] = []
    for spec in specs:
        status = _status(spec, metadata)
        if status.exists:
            outcomes[spec.name] = "exists"
            if status.partitions != spec.partitions:
                logger.warning(
                    "topic %s exists with %s partitions, the spec asks for %d; left unchanged",
                    spec.name,
                    status.partitions,
                    spec.partitions,
                )
            if status.replication_factor != spec.replication_factor:
                logger.warning(
                    "topic %s exists with replication factor %s, the spec asks for %d; "
                    "left unchanged",
                    spec.name,
                    status.replication_factor,
                    spec.replication_factor,
                )
            continue
        if spec.replication_factor > len(metadata.brokers):
            raise KafkaError(
                f"topic {spec.name!r} needs replication factor {spec.replication_factor}, but "
                f"the cluster at {settings.bootstrap_servers} has {len(metadata.brokers)} "
                "broker(s); set STREAMPROC_REPLICATION_FACTOR (or --replication-factor) to at "
                "most that, or start 3 brokers with `streamproc kafka start --brokers 3`"
            )
        missing.append(spec)
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for spec in missing:
            try:
                futures[spec.name].result(timeout=timeout + 5)
            except concurrent.futures.TimeoutError as exc:
                raise KafkaError(
                    f"creating topic {spec.name!r} at {settings.bootstrap_servers} did not "
                    f"finish within {timeout + 5:.0f} s"
                ) from exc
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, _RdKafkaError) and (
                    error.code() == _RdKafkaError.TOPIC_ALREADY_EXISTS
                ):
                    outcomes[spec.name] = "exists"  # created concurrently by someone else
                    continue
                if isinstance(error, _RdKafkaError) and error.code() in (
                    _RdKafkaError.TOPIC_AUTHORIZATION_FAILED,
                    _RdKafkaError.CLUSTER_AUTHORIZATION_FAILED,
                ):
                    raise AuthorizationError(
                        f"creating topic {spec.name!r} at {settings.bootstrap_servers} was "
                        f"refused to {describe_security(settings)}: {error.str()}; {ACL_HINT}"
                    ) from exc
                raise KafkaError(
                    f"cannot create topic {spec.name!r} ({spec.partitions} partitions, "
                    f"replication factor {spec.replication_factor}, config {spec.config}) at "
                    f"{settings.bootstrap_servers}: {error.str() if error else exc}"
                ) from exc
            outcomes[spec.name] = "created"
            logger.info("created topic %s", spec.name)
        _wait_visible(admin, [s.name for s in missing], timeout)
    return [(spec.name, outcomes[spec.name]) for spec in specs]


def _wait_visible(admin: AdminClient, names: Sequence[str], timeout: float) -> None:
    """Wait until new topics have leaders in the metadata, so producing at once works."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            topics = admin.list_topics(timeout=5.0).topics
        except KafkaException:
            time.sleep(0.2)
            continue
        ready = all(
            name in topics
            and topics[name].error is None
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        )
        if ready:
            return
        time.sleep(0.2)
    logger.warning("created topics %s have no leaders yet after %g s", ", ".join(names), timeout)


def delete_topics(settings: Settings, prefix: str, *, timeout: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a run's own, on a shared
    cluster); return their names. Errors are ignored: this is clean-up."""
    admin = _admin(settings)
    with contextlib.suppress(Exception):
        names = [t for t in admin.list_topics(timeout=timeout).topics if t.startswith(prefix)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=timeout).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=timeout)
        return names
    return []
