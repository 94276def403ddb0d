"""``streamproc consume TOPIC``: decode any of the project's topics to JSON lines on stdout."""

from __future__ import annotations

import sys
import time
import uuid

import click
import orjson

from streamproc.cli._common import settings_from
from streamproc.config import Settings
from streamproc.emit.decode_any import decode_record, to_jsonable
from streamproc.errors import BrokerUnavailableError, StreamprocError
from streamproc.ingest.schemas import load_schemas

__all__ = ["command", "resolve_topic"]


def resolve_topic(settings: Settings, topic: str) -> str:
    """A role name (input, valid, dlq, predictions, drift, snapshots) or a topic name."""
    return settings.topics.get(topic, topic)


@click.command("consume")
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the newest.")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N records.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    help="Stop after S seconds without a new record (default: run until Ctrl-C).",
)
@click.option("--group", help="Consumer group to join and commit to (default: none, no commits).")
@click.option("--meta", is_flag=True, help="Wrap each record with topic, partition, offset, key.")
@click.pass_context
def command(
    ctx: click.Context,
    topic: str,
    from_beginning: bool,
    max_records: int | None,
    timeout: float | None,
    group: str | None,
    meta: bool,
) -> None:
    """Print the records of TOPIC as JSON lines.

    TOPIC is a topic name or one of the roles input, valid, dlq, predictions, drift,
    snapshots. Avro (single-object) and JSON values are decoded; bytes fields are base64.
    Records that cannot be decoded are reported on stderr and skipped.
    """
    from confluent_kafka import Consumer, KafkaException

    from streamproc.kafka.clients import client_config

    settings = settings_from(ctx)
    name = resolve_topic(settings, topic)
    schemas = load_schemas(settings.schemas_path)
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": group or f"streamproc-consume-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": group is not None,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
            },
        )
    )
    try:
        try:
            meta_info = consumer.list_topics(name, timeout=10.0)
        except KafkaException as exc:
            raise BrokerUnavailableError(
                f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
            ) from exc
        tmeta = meta_info.topics.get(name)
        if tmeta is None or tmeta.error is not None:
            raise StreamprocError(f"topic {name!r} does not exist (streamproc topics create)")
        consumer.subscribe([name])
        seen = 0
        last = time.monotonic()
        out = sys.stdout.buffer
        while max_records is None or seen < max_records:
            batch = consumer.consume(min(500, (max_records or 500) - seen), 0.5)
            if not batch:
                if timeout is not None and time.monotonic() - last > timeout:
                    break
                continue
            last = time.monotonic()
            for msg in batch:
                if msg.error() is not None:
                    click.echo(f"consume error: {msg.error()}", err=True)
                    continue
                try:
                    _, record = decode_record(msg.value() or b"", schemas)
                except StreamprocError as exc:
                    click.echo(
                        f"{name}[{msg.partition()}]@{msg.offset()}: cannot decode: {exc}", err=True
                    )
                    continue
                line = to_jsonable(record)
                if meta:
                    key = msg.key()
                    line = {
                        "topic": name,
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "key": key.decode("utf-8", "replace") if key is not None else None,
                        "record": line,
                    }
                out.write(orjson.dumps(line) + b"\n")
                seen += 1
                if max_records is not None and seen >= max_records:
                    break
            out.flush()
    finally:
        consumer.close()
