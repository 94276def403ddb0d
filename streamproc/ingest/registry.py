"""Confluent Schema Registry lookups for the Confluent wire format (when configured)."""

from __future__ import annotations

from typing import Any

import orjson

from streamproc.config import Settings
from streamproc.errors import ConfigError
from streamproc.ingest.decode import SchemaLookup
from streamproc.ingest.schemas import SchemaVersion

__all__ = [
    "confluent_header",
    "confluent_header_for",
    "register_writer_schema",
    "registry_lookup_for",
]


def confluent_header(schema_id: int) -> bytes:
    """The Confluent wire-format prefix: magic byte 0 and the big-endian 4-byte schema id.

    >>> confluent_header(42).hex()
    '000000002a'
    """
    return b"\x00" + schema_id.to_bytes(4, "big")


def register_writer_schema(client: Any, subject: str, version: SchemaVersion) -> int:
    """Register ``version`` under ``subject`` (idempotent at the registry) and return its id.

    ``client`` is a confluent-kafka ``SchemaRegistryClient``.
    """
    from confluent_kafka.schema_registry import Schema

    try:
        return int(
            client.register_schema(subject, Schema(orjson.dumps(version.raw).decode(), "AVRO"))
        )
    except Exception as exc:  # the client raises SchemaRegistryError or transport errors
        raise ConfigError(
            f"cannot register {version.short_name} v{version.version} under subject {subject!r} "
            f"at the Schema Registry: {exc}"
        ) from exc


def confluent_header_for(settings: Settings, topic: str, version: SchemaVersion) -> bytes | None:
    """The Confluent header producers use for ``topic``, or None without a registry URL.

    The subject follows the registry's default TopicNameStrategy: ``<topic>-value``.
    """
    if not settings.schema_registry_url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": settings.schema_registry_url})
    return confluent_header(register_writer_schema(client, f"{topic}-value", version))


def registry_lookup_for(settings: Settings) -> SchemaLookup | None:
    """A schema-id lookup backed by confluent-kafka's client, or None without a registry URL."""
    if not settings.schema_registry_url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": settings.schema_registry_url})

    def lookup(schema_id: int) -> dict[str, Any]:
        schema = client.get_schema(schema_id)
        if schema.schema_str is None:  # the registry always sends it; the hints say Optional
            raise ValueError(f"the registry returned no schema text for id {schema_id}")
        parsed: dict[str, Any] = orjson.loads(schema.schema_str)
        return parsed

    return lookup
