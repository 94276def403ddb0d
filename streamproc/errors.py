"""Errors raised by streamproc.

Every error the library raises on purpose derives from :class:`StreamprocError`,
so the CLI and the agents catch that one type::

    StreamprocError              root: the CLI and agents catch this one type
    ├── ConfigError              bad or missing setting (raised at startup)
    ├── SchemaError              .avsc missing, unparsable, or an incompatible evolution
    ├── EventError               bad input; carries reason and where=topic[partition]@offset
    │   ├── EventDecodeError     bytes do not match any known writer schema / format
    │   ├── UnknownSchemaError   a fingerprint or registry id no known schema has
    │   ├── EventTooLargeError   refused before decoding
    │   └── InvalidEventError    decoded, but breaks a data-quality rule
    ├── SnapshotError            snapshot missing, corrupt or version-incompatible
    └── KafkaError               the broker or the local launcher
        ├── BrokerUnavailableError   Kafka unreachable
        │   └── AuthenticationError  the broker refused the credentials or the TLS handshake
        ├── AuthorizationError       authenticated, but the ACLs deny an operation
        └── LauncherError            the local Kafka could not be set up or started
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BrokerUnavailableError",
    "ConfigError",
    "EventDecodeError",
    "EventError",
    "EventTooLargeError",
    "InvalidEventError",
    "KafkaError",
    "LauncherError",
    "SchemaError",
    "SnapshotError",
    "StreamprocError",
    "UnknownSchemaError",
]


class StreamprocError(Exception):
    """Root of every error streamproc raises on purpose."""


class ConfigError(StreamprocError):
    """A setting is missing or has a bad value."""


class SchemaError(StreamprocError):
    """An Avro schema file is missing, unparsable, or breaks the evolution rules."""


class EventError(StreamprocError):
    """Bad input: the event is dead-lettered with :attr:`reason` and the stream goes on.

    Parameters
    ----------
    message
        What is wrong, what was expected and what arrived.
    reason
        Machine-readable reason code written to the dead letter (``decode_error``,
        ``unknown_schema``, ``too_large``, ``rule_violation:<rule>``).
    where
        ``topic[partition]@offset`` of the record, when known.
    """

    reason = "invalid"

    def __init__(self, message: str, *, reason: str | None = None, where: str = "?") -> None:
        self.message = message
        if reason is not None:
            self.reason = reason
        self.where = where
        super().__init__(f"{where}: {message}")

    def at(self, where: str) -> EventError:
        """Return this error with its location filled in."""
        self.where = where
        self.args = (f"{where}: {self.message}",)
        return self


class EventDecodeError(EventError):
    """The bytes cannot be decoded with the schema they claim."""

    reason = "decode_error"


class UnknownSchemaError(EventError):
    """The record names a schema (fingerprint or registry id) that no known schema has."""

    reason = "unknown_schema"


class EventTooLargeError(EventError):
    """The record is larger than the configured limit; it is refused before decoding."""

    reason = "too_large"


class InvalidEventError(EventError):
    """A decoded event breaks a data-quality rule.

    >>> str(InvalidEventError("playback.position_s", -4.0, "position_non_negative", ">= 0",
    ...                       where="viewing-events[3]@1207"))
    'viewing-events[3]@1207: field "playback.position_s" must be >= 0, got -4.0'
    """

    def __init__(
        self, field: str, value: object, rule: str, expected: str, *, where: str = "?"
    ) -> None:
        self.field, self.value, self.rule, self.expected = field, value, rule, expected
        super().__init__(
            f'field "{field}" must be {expected}, got {value!r}',
            reason=f"rule_violation:{rule}",
            where=where,
        )


class SnapshotError(StreamprocError):
    """A model snapshot is missing, corrupt, unsigned or incompatible."""


class KafkaError(StreamprocError):
    """Kafka could not be reached or set up."""


class BrokerUnavailableError(KafkaError):
    """No broker answered at the configured bootstrap servers."""


class AuthenticationError(BrokerUnavailableError):
    """The broker refused the client's SASL credentials or the TLS handshake failed.

    A subclass of :class:`BrokerUnavailableError`: the cluster cannot be used, and retrying
    with the same settings does not help. The message never contains a secret.
    """


class AuthorizationError(KafkaError):
    """The client authenticated, but the cluster's ACLs deny it an operation."""


class LauncherError(KafkaError):
    """The local Apache Kafka launcher could not do what it was asked."""
