"""TLS and SASL for every Kafka client, from the ``security_*``, ``sasl_*`` and ``ssl_*`` settings.

Two client libraries talk to Kafka, and both are configured from the same settings:

- confluent-kafka (producer, consumers, admin, lag): :func:`security_config` gives the
  librdkafka properties, merged into every client's configuration by
  :func:`~streamproc.kafka.clients.client_config`;
- aiokafka, under Faust (the workers): :func:`ssl_context` builds the ``ssl.SSLContext`` from
  the same CA, certificate and key files (``agents/credentials.py`` wraps it with the SASL
  credentials).

Secrets (``sasl_password``, ``ssl_key_password``) are ``SecretStr`` settings; they are read
here, where a client needs them, and nowhere else. :func:`describe_security` names the
protocol, mechanism and user for messages and logs, never the password.
"""

from __future__ import annotations

import ssl
from typing import Any

from streamproc.config import Settings, secret_fields
from streamproc.errors import ConfigError

__all__ = ["ACL_HINT", "describe_security", "redact", "security_config", "ssl_context"]


ACL_HINT = (
    "the user needs ACLs for it: an administrator grants them with `streamproc kafka add-user` "
    "(local secured Kafka) or kafka-acls (README, Security)"
)


def security_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka properties for ``settings.security_protocol`` (empty for PLAINTEXT).

    Examples
    --------
    >>> from streamproc.config import Settings
    >>> config = security_config(
    ...     Settings(security_protocol="SASL_SSL", sasl_username="app", sasl_password="s3cret")
    ... )
    >>> sorted(config)  # doctest: +NORMALIZE_WHITESPACE
    ['sasl.mechanisms', 'sasl.password', 'sasl.username', 'security.protocol',
     'ssl.endpoint.identification.algorithm']
    >>> config["sasl.mechanisms"], config["ssl.endpoint.identification.algorithm"]
    ('SCRAM-SHA-512', 'https')
    """
    if settings.security_protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security.protocol": settings.security_protocol}
    if settings.uses_sasl:
        config["sasl.mechanisms"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        # The settings check guarantees a password with SASL.
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        config["sasl.password"] = password
    if settings.uses_tls:
        if settings.ssl_cafile is not None:
            config["ssl.ca.location"] = str(settings.ssl_cafile)
        if settings.ssl_certfile is not None:
            config["ssl.certificate.location"] = str(settings.ssl_certfile)
        if settings.ssl_keyfile is not None:
            config["ssl.key.location"] = str(settings.ssl_keyfile)
        if settings.ssl_key_password is not None:
            config["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.ssl_check_hostname else "none"
        )
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the workers' aiokafka clients, or None without TLS.

    The context verifies the brokers against ``ssl_cafile`` (the system's CAs when unset),
    checks their host names unless ``ssl_check_hostname`` is false, and presents
    ``ssl_certfile`` when it is set (TLS client authentication).

    Raises
    ------
    ConfigError
        When a file cannot be read or does not hold what it should (the message names the
        setting and the file, never the key password).
    """
    if not settings.uses_tls:
        return None
    cafile = settings.ssl_cafile
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"STREAMPROC_SSL_CAFILE: cannot load CA certificates from {cafile} "
            f"({_reason(exc)}); expected a PEM file of one or more certificates"
        ) from None
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        key_password = (
            settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None
        )
        try:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
                password=key_password,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"STREAMPROC_SSL_CERTFILE / STREAMPROC_SSL_KEYFILE: cannot load the client "
                f"certificate {settings.ssl_certfile} with key {settings.ssl_keyfile} "
                f"({_reason(exc)}); expected PEM files, the key matching the certificate and "
                "STREAMPROC_SSL_KEY_PASSWORD set if the key is encrypted"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    # ssl errors carry the OpenSSL reason (e.g. "PEM lib"); OSError its strerror.
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason or type(exc).__name__)


def describe_security(settings: Settings) -> str:
    """How clients connect, for messages: ``"SASL_SSL (SCRAM-SHA-512 as user 'app')"``.

    Examples
    --------
    >>> from streamproc.config import Settings
    >>> describe_security(Settings())
    'PLAINTEXT'
    >>> describe_security(
    ...     Settings(security_protocol="SASL_SSL", sasl_username="app", sasl_password="x")
    ... )
    "SASL_SSL (SCRAM-SHA-512 as user 'app')"
    """
    if settings.uses_sasl:
        return (
            f"{settings.security_protocol} ({settings.sasl_mechanism} as user "
            f"{settings.sasl_username!r})"
        )
    return settings.security_protocol


def redact(text: str, settings: Settings) -> str:
    """``text`` with every secret of ``settings`` replaced by ``***``.

    A last line of defence for messages built from a library's error text: librdkafka and
    aiokafka do not put passwords in their errors, and this keeps it so if one ever did.

    Examples
    --------
    >>> from streamproc.config import Settings
    >>> s = Settings(security_protocol="SASL_SSL", sasl_username="app", sasl_password="s3cret")
    >>> redact("login app/s3cret failed", s)
    'login app/*** failed'
    """
    for name in secret_fields():
        value = getattr(settings, name)
        if value is None:
            continue
        secret = value.get_secret_value()
        # snapshot_keys is "id:secret,...": each secret part is redacted on its own too.
        parts = [secret, *(p.partition(":")[2] for p in secret.split(","))]
        for part in sorted({p for p in parts if len(p) >= 4}, key=len, reverse=True):
            text = text.replace(part, "***")
    return text
