"""Confluent Schema Registry lookups for the Confluent wire format (when configured)."""

from __future__ import annotations

from typing import Any

import orjson

from streamproc.config import Settings
from streamproc.ingest.decode import SchemaLookup

__all__ = ["registry_lookup_for"]


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
