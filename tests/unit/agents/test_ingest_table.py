"""The ingest agent's de-duplicator works on the ids its table recovers from the changelog."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import SecretStr

from agents.app import WorkerApp, create_app
from streamproc.config import Settings
from streamproc.ingest.dedupe import Deduplicator

NOW_MS = 1_700_000_000_000


def _changelog_record(partition: int, event_id: str, value: list[int] | None) -> Any:
    # What Faust's recovery hands a table: the changelog record, key and value decoded.
    return SimpleNamespace(
        key=event_id,
        value=value,
        message=SimpleNamespace(partition=partition, value=None if value is None else b"[]"),
    )


def _ingest_app(settings: Settings) -> tuple[WorkerApp, Deduplicator, Any]:
    """An ingest-only app, its de-duplicator and its de-duplication table."""
    app = create_app(settings.model_copy(update={"agents": "ingest"}))
    assert app.deduplicator is not None
    (table,) = app.tables.values()
    return app, app.deduplicator, table


def test_ids_recovered_into_the_table_are_the_deduplicators(settings: Settings) -> None:
    _, dedupe, table = _ingest_app(settings)
    now_ms = NOW_MS
    table.apply_changelog_batch(
        [
            _changelog_record(2, "e-1", [2, 40, now_ms]),
            _changelog_record(1, "e-2", [1, 7, now_ms]),
            _changelog_record(1, "e-2", None),  # forgotten later: a tombstone
        ]
    )
    later = now_ms + 1_000
    assert dedupe.is_duplicate("e-1", 0, 9, now_ms=later)  # another record with a known id
    assert not dedupe.is_duplicate("e-1", 2, 40, now_ms=later)  # the same record, replayed
    assert not dedupe.is_duplicate("e-2", 0, 10, now_ms=later)  # its id was forgotten


def test_ids_forgotten_after_a_recovery_leave_the_stores_partition_map(
    settings: Settings,
) -> None:
    app, dedupe, table = _ingest_app(settings)
    now_ms = NOW_MS
    table.apply_changelog_batch(
        [_changelog_record(p, f"e-{p}", [p, 1, now_ms + p]) for p in range(3)]
    )
    store: Any = table.data
    assert store._key_partition == {"e-0": 0, "e-1": 1, "e-2": 2}  # Faust's own bookkeeping
    # Sent later (records of the table's changelog, through the app's producer): stubbed.
    app.sender.send = lambda *args, **kwargs: None  # type: ignore[method-assign]
    assert dedupe.purge(now_ms=now_ms + 1 + int(settings.dedupe_window_s * 1000)) == 1
    assert store._key_partition == {"e-1": 1, "e-2": 2}
    assert set(store.data) == {"e-1", "e-2"}


def test_a_worker_without_the_ingest_agent_has_no_deduplicator(settings: Settings) -> None:
    only_model = settings.model_copy(
        update={"agents": "model", "snapshot_keys": SecretStr("k1:ingest-table-test")}
    )
    assert create_app(only_model).deduplicator is None
