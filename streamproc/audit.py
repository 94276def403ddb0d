"""Conservation audit of the ingest stage: every input record is valid, dead or a duplicate.

Reads the input, valid and dead-letter topics to their ends and accounts for each input
record by its source ``partition:offset``: valid records carry it in a header, dead letters
in their fields. An input record found in neither was dropped as a duplicate (or is not yet
processed: run the audit after the worker has caught up). Valid records that appear more
than once (a replay after a crash, at-least-once) are counted once and reported as repeats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from streamproc.config import Settings
from streamproc.emit.decode_any import decode_record
from streamproc.errors import StreamprocError
from streamproc.ingest.process import HEADER_SOURCE, parse_source_header
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.read import read_to_end

__all__ = ["IngestAudit", "audit_ingest"]


@dataclass
class IngestAudit:
    """The accounting of one input topic."""

    input_records: int = 0
    valid: int = 0  # distinct input records that produced a valid record
    dead: int = 0  # distinct input records that produced a dead letter
    duplicates: int = 0  # input records with neither (dropped as duplicates)
    valid_repeats: int = 0  # extra copies of valid records (at-least-once replays)
    dead_repeats: int = 0
    both: int = 0  # input records found as valid AND dead (must be 0)
    dead_by_reason: Counter[str] = field(default_factory=Counter)
    valid_event_ids: set[str] = field(default_factory=set)
    dead_event_ids: dict[str, str] = field(default_factory=dict)  # event_id -> reason
    unaccounted_valid_ids: int = 0  # valid event ids counted twice as distinct records

    @property
    def balanced(self) -> bool:
        """Input = valid + dead + duplicates, and no record is both valid and dead."""
        return self.input_records == self.valid + self.dead + self.duplicates and self.both == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "input_records": self.input_records,
            "valid": self.valid,
            "dead_letters": self.dead,
            "duplicates": self.duplicates,
            "valid_repeats": self.valid_repeats,
            "dead_repeats": self.dead_repeats,
            "valid_and_dead": self.both,
            "balanced": self.balanced,
            "dead_by_reason": dict(sorted(self.dead_by_reason.items())),
        }


def audit_ingest(settings: Settings, *, timeout: float = 120.0) -> IngestAudit:
    """Account for every record of the input topic (see the module docstring)."""
    schemas = load_schemas(settings.schemas_path)
    report = IngestAudit()
    input_offsets: set[tuple[int, int]] = set()
    for rec in read_to_end(settings, settings.topic_input, timeout=timeout):
        input_offsets.add((rec.partition, rec.offset))
    report.input_records = len(input_offsets)

    valid_src: set[tuple[int, int]] = set()
    for rec in read_to_end(settings, settings.topic_valid, timeout=timeout):
        header = rec.header(HEADER_SOURCE)
        if header is None:
            raise StreamprocError(
                f"{settings.topic_valid}[{rec.partition}]@{rec.offset} has no {HEADER_SOURCE} "
                "header: was it written by another program?"
            )
        topic, partition, offset = parse_source_header(header)
        if topic != settings.topic_input:
            continue
        if (partition, offset) in valid_src:
            report.valid_repeats += 1
            continue
        valid_src.add((partition, offset))
        _, record = decode_record(rec.value or b"", schemas)
        report.valid_event_ids.add(str(record["event_id"]))

    dead_src: set[tuple[int, int]] = set()
    for rec in read_to_end(settings, settings.topic_dlq, timeout=timeout):
        _, letter = decode_record(rec.value or b"", schemas)
        if letter.get("source_topic") != settings.topic_input:
            continue
        src = (int(letter["source_partition"]), int(letter["source_offset"]))
        if src in dead_src:
            report.dead_repeats += 1
            continue
        dead_src.add(src)
        report.dead_by_reason[str(letter["reason"])] += 1
        if letter.get("event_id"):
            report.dead_event_ids[str(letter["event_id"])] = str(letter["reason"])

    report.valid = len(valid_src & input_offsets)
    report.dead = len(dead_src & input_offsets)
    report.both = len(valid_src & dead_src)
    report.duplicates = len(input_offsets - valid_src - dead_src)
    return report
