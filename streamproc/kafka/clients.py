"""The one place Kafka clients get their configuration from, and a broker reachability check.

Every confluent-kafka ``Producer``, ``Consumer`` and ``AdminClient`` the project builds takes its
configuration from :func:`client_config`, so connection settings, TLS and SASL
(:mod:`streamproc.kafka.security`) are added in one place.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError as _RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamproc.config import Settings
from streamproc.errors import AuthenticationError, BrokerUnavailableError
from streamproc.kafka.security import describe_security, redact, security_config

__all__ = [
    "KEY_PARTITIONER",
    "ConnectionWatch",
    "client_config",
    "quiet_client_logger",
    "wait_for_broker",
]

#: librdkafka partitioner of every producer the project writes keyed records with: murmur2,
#: as Java clients and aiokafka hash keys, so a key lands on the same partition whichever
#: client wrote it, and a viewer's valid partition is the partition of its input records.
KEY_PARTITIONER = "murmur2_random"

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
        Supplies ``bootstrap.servers``, the ``client.id`` (the app id) and the TLS/SASL
        properties (:func:`~streamproc.kafka.security.security_config`).
    **extra
        librdkafka properties added or overridden verbatim; pass dotted names with
        ``**{"group.id": "g"}``.

    Returns
    -------
    dict
        A new dict, safe to modify. With SASL it holds the password in clear: hand it to a
        client, never to a log.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.app_id,
    }
    config.update(security_config(settings))
    config.update(extra)
    return config


class ConnectionWatch:
    """An ``error_cb`` that notices the connection errors no retry can cure.

    librdkafka retries failed connections forever and reports each failure only to its
    ``error_cb``; a request meanwhile just times out. With this callback a caller can stop
    at the first refused login or failed TLS handshake and say so (:meth:`raise_if_refused`)
    instead of waiting for the timeout.
    """

    _REFUSED = frozenset({_RdKafkaError._AUTHENTICATION, _RdKafkaError._SSL})

    def __init__(self) -> None:
        self.refused: _RdKafkaError | None = None
        self.last: str | None = None

    def __call__(self, error: _RdKafkaError) -> None:
        # "1/1 brokers are down" follows the error that says why; keep the why.
        if error.code() != _RdKafkaError._ALL_BROKERS_DOWN or self.last is None:
            self.last = error.str()
        if error.code() in self._REFUSED or (
            error.code() == _RdKafkaError.SASL_AUTHENTICATION_FAILED
        ):
            self.refused = error

    def raise_if_refused(self, settings: Settings) -> None:
        """Raise :class:`AuthenticationError` if the broker refused this client.

        The message names the protocol, mechanism, user and the settings to check; librdkafka's
        text is passed through :func:`~streamproc.kafka.security.redact`.
        """
        if self.refused is None:
            return
        text = redact(self.refused.str(), settings)
        where = f"Kafka at {settings.bootstrap_servers}"
        if self.refused.code() == _RdKafkaError._SSL:
            raise AuthenticationError(
                f"the TLS handshake with {where} failed ({describe_security(settings)}): "
                f"{text}; check STREAMPROC_SSL_CAFILE (the CA that signed the broker "
                "certificates), STREAMPROC_SSL_CHECK_HOSTNAME and that the port speaks TLS"
            )
        raise AuthenticationError(
            f"{where} refused the login over {describe_security(settings)}: {text}; check "
            "STREAMPROC_SASL_USERNAME, STREAMPROC_SASL_PASSWORD and STREAMPROC_SASL_MECHANISM"
        )


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
    AuthenticationError
        As soon as the broker refuses the SASL login or the TLS handshake fails.
    """
    watch = ConnectionWatch()
    admin = AdminClient(client_config(settings, logger=quiet_client_logger(), error_cb=watch))
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            # Short requests, so that a refused login is noticed within a second or two.
            metadata = admin.list_topics(timeout=max(0.5, min(remaining, 2.0)))
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            watch.raise_if_refused(settings)
            last = redact(watch.last or (str(exc.args[0]) if exc.args else repr(exc)), settings)
        else:
            count = len(metadata.brokers)
            if count >= min_brokers:
                logger.debug("%d broker(s) answer at %s", count, settings.bootstrap_servers)
                return count
            last = f"{count} broker(s) answered, expected at least {min_brokers}"
            time.sleep(0.2)
    raise BrokerUnavailableError(
        f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout:g} s "
        f"({last}); {START_HINT}. This client connects with "
        f"{describe_security(settings)}: a cluster that needs TLS or SASL also needs "
        "STREAMPROC_SECURITY_PROTOCOL and the STREAMPROC_SASL_*/STREAMPROC_SSL_* settings"
    )
