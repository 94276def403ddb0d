"""``streamproc produce``: JSON lines of ViewingEvents in, encoded events to the input topic."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import click
import orjson

from streamproc.cli._common import settings_from
from streamproc.config import OutputFormat
from streamproc.errors import EventError
from streamproc.produce import EventProducer

__all__ = ["ProduceCounts", "command", "parse_event_line", "produce_lines"]

#: Bad lines reported one by one before the rest are only counted.
_MAX_REPORTED = 100


class LineError(Exception):
    """A line of input is not a ViewingEvent."""


def _iso_to_millis(text: str) -> int:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LineError(
            f'field "event_time" must be epoch milliseconds or an ISO-8601 time, got {text!r}'
        ) from None
    if when.tzinfo is None:
        raise LineError(
            f'field "event_time" must carry a time zone (e.g. a trailing Z), got {text!r}'
        )
    return int(when.timestamp() * 1000)


def parse_event_line(line: bytes) -> dict[str, Any]:
    """One JSON line -> an event dict, with an ISO-8601 ``event_time`` as epoch ms.

    Raises
    ------
    LineError
        When the line is not a JSON object or its event_time is an unusable string.

    Examples
    --------
    >>> parse_event_line(b'{"event_id": "e1", "event_time": "2024-06-01T12:00:00Z"}')
    {'event_id': 'e1', 'event_time': 1717243200000}
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object (one ViewingEvent), got a {type(obj).__name__}")
    when = obj.get("event_time")
    if isinstance(when, str):
        obj["event_time"] = _iso_to_millis(when)
    return obj


@dataclass(slots=True)
class ProduceCounts:
    """What ``produce`` did with its input."""

    read: int = 0
    sent: int = 0
    rejected: int = 0
    failed: int = 0


def produce_lines(
    lines: Iterable[bytes], producer: EventProducer, err: IO[str] | None = None
) -> ProduceCounts:
    """Send each JSON line through ``producer``; report bad lines (with their number) on ``err``.

    Blank lines are skipped and not counted. Returns the counts after flushing.
    """
    out = err or sys.stderr
    counts = ProduceCounts()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        counts.read += 1
        try:
            producer.send(parse_event_line(line))
        except (LineError, EventError) as exc:
            counts.rejected += 1
            if counts.rejected <= _MAX_REPORTED:
                message = exc.message if isinstance(exc, EventError) else str(exc)
                out.write(f"line {number}: rejected: {message}\n")
            elif counts.rejected == _MAX_REPORTED + 1:
                out.write(f"(more than {_MAX_REPORTED} rejected lines; only counting now)\n")
            continue
        counts.sent += 1
    counts.failed = producer.flush(60.0)
    return counts


@click.command("produce")
@click.argument("source", type=click.File("rb"), default="-", metavar="[FILE|-]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["avro", "json"]),
    default=None,
    help="Encoding written [env STREAMPROC_PRODUCER_FORMAT; default avro].",
)
@click.pass_context
def command(ctx: click.Context, source: IO[bytes], fmt: OutputFormat | None) -> None:
    """Publish ViewingEvents from JSON lines (FILE, or - for stdin) to the input topic.

    One event per line; event_time is epoch milliseconds or an ISO-8601 string with a time
    zone. Each event is checked against the schema first: a bad line is reported with its
    number and the field, and skipped. Exits 1 if any line was rejected or not delivered.
    """
    settings = settings_from(ctx, producer_format=fmt)
    producer = EventProducer(settings)
    producer.check_connection()
    counts = produce_lines(source, producer)
    click.echo(
        f"read {counts.read}, sent {counts.sent}, rejected {counts.rejected}, "
        f"failed {counts.failed} (topic {producer.topic}, format {producer.fmt})",
        err=True,
    )
    if counts.failed and producer.last_error:
        click.echo(f"last delivery error: {producer.last_error}", err=True)
    if counts.rejected or counts.failed:
        # A ClickException (exit 1) rather than ctx.exit(1): `main` runs click with
        # standalone_mode=False, where a plain exit code would be dropped.
        raise click.ClickException(
            f"{counts.rejected} lines rejected, {counts.failed} records not delivered"
        )
