"""broker_credentials(settings) -> the Faust (aiokafka) credentials of the security settings."""

from __future__ import annotations

import faust
from faust.types.auth import CredentialsT

from streamproc.config import Settings
from streamproc.kafka.security import ssl_context

__all__ = ["broker_credentials"]


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """What ``faust.App(broker_credentials=...)`` takes for ``settings.security_protocol``.

    Faust hands these to aiokafka (``credentials_to_aiokafka_auth``): SASL with the mechanism
    and user of the settings, over the TLS context of
    :func:`~streamproc.kafka.security.ssl_context` with SASL_SSL and SSL; None for PLAINTEXT.
    The TLS context is built from the same CA, certificate and key files as the
    confluent-kafka clients use, so both client libraries trust the same brokers.

    Raises
    ------
    ConfigError
        If a TLS file cannot be loaded.
    """
    context = ssl_context(settings)
    if settings.uses_sasl:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        # faust.SASLCredentials' repr shows the user name only.
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
