"""The one place Kafka clients get their configuration from, and a broker reachability check.

Every confluent-kafka ``Producer``, ``Consumer`` and ``AdminClient`` the project builds takes its
configuration from :func:`client_config`, so connection settings (and, later, TLS/SASL) are added
in one place.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamproc.config import Settings
from streamproc.errors import BrokerUnavailableError

__all__ = ["client_config", "quiet_client_logger", "wait_for_broker"]

logger = logging.getLogger(__name__)

START_HINT = (
    "start a local one with `streamproc kafka start`, or point STREAMPROC_BOOTSTRAP_SERVERS "
    "(or --bootstrap-servers) at a running cluster"
)


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """The confluent-kafka configuration shared by every client, plus ``extra``.

    Parameters
    ----------
    settings
        Supplies ``bootstrap.servers`` and the ``client.id`` (the app id).
    **extra
        librdkafka properties added or overridden verbatim; pass dotted names with
        ``**{"group.id": "g"}``.

    Returns
    -------
    dict
        A new dict, safe to modify.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.app_id,
    }
    config.update(extra)
    return config


def quiet_client_logger() -> logging.Logger:
    """A logger that drops librdkafka's messages, for probes that expect refused connections.

    It sits outside the logging hierarchy (no handlers, level above CRITICAL), so the
    "Connection refused" lines librdkafka emits while a broker starts never reach the console.
    """
    return logging.Logger("streamproc.kafka.probe", logging.CRITICAL + 1)


def wait_for_broker(settings: Settings, timeout: float = 30.0, *, min_brokers: int = 1) -> int:
    """Wait until the cluster at ``settings.bootstrap_servers`` answers a metadata request.

    Parameters
    ----------
    settings
        The cluster to probe.
    timeout
        Seconds to keep trying.
    min_brokers
        Wait until the metadata lists at least this many brokers.

    Returns
    -------
    int
        The number of brokers the metadata lists.

    Raises
    ------
    BrokerUnavailableError
        When no answer with ``min_brokers`` brokers arrives within ``timeout`` seconds.
    """
    admin = AdminClient(client_config(settings, logger=quiet_client_logger()))
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            metadata = admin.list_topics(timeout=max(0.5, min(remaining, 5.0)))
        except KafkaException as exc:
            last = str(exc.args[0]) if exc.args else repr(exc)
        else:
            count = len(metadata.brokers)
            if count >= min_brokers:
                logger.debug("%d broker(s) answer at %s", count, settings.bootstrap_servers)
                return count
            last = f"{count} broker(s) answered, expected at least {min_brokers}"
            time.sleep(0.2)
    raise BrokerUnavailableError(
        f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout:g} s "
        f"({last}); {START_HINT}"
    )
