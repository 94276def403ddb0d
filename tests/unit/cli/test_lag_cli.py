"""`streamproc lag` without a broker: help, rendering, JSON output, an unreachable broker."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from rich.console import Console

from streamproc.cli import lag as lag_cli
from streamproc.cli import main, root
from streamproc.config import Settings
from streamproc.kafka.lag import PartitionLag

ROWS = [
    PartitionLag("streamproc", "viewing-events", 0, 100, 150, 50, 2.5, "worker-1-abc"),
    PartitionLag("streamproc", "viewing-events", 1, None, 10, 10, None, None),
]


def test_help() -> None:
    result = CliRunner().invoke(root, ["lag", "--help"])
    assert result.exit_code == 0
    for flag in ("--group", "--all", "--watch", "--interval", "--json", "--timeout"):
        assert flag in result.output


def test_unreachable_broker_fails_fast_without_a_traceback(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with pytest.raises(SystemExit) as exc_info:
        main(["--bootstrap-servers", "127.0.0.1:1", "lag", "--timeout", "1"])
    assert time.monotonic() - started < 10
    assert exc_info.value.code == 3
    err = capsys.readouterr().err
    assert "BrokerUnavailableError: no Kafka broker answered at 127.0.0.1:1" in err
    assert "Traceback" not in err


def test_group_and_all_are_exclusive(settings: Settings) -> None:
    result = CliRunner().invoke(root, ["lag", "--group", "g", "--all"])
    assert result.exit_code == 2
    assert "pass --group or --all, not both" in result.output


def test_json_output(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str | None, bool]] = []

    def fake(
        s: Settings, group: str | None, *, all_groups: bool, timeout: float
    ) -> list[PartitionLag]:
        calls.append((group, all_groups))
        return ROWS

    monkeypatch.setattr(lag_cli, "collect_lag", fake)
    result = CliRunner().invoke(root, ["lag", "--json", "--group", "streamproc"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc[0] == {
        "group": "streamproc", "topic": "viewing-events", "partition": 0, "committed": 100,
        "log_end": 150, "lag": 50, "lag_seconds": 2.5, "member": "worker-1-abc",
    }  # fmt: skip
    assert calls == [("streamproc", False)]


def test_table_rendering() -> None:
    console = Console(record=True, width=120)
    console.print(lag_cli.render_lag(ROWS, ["streamproc", "idle-group"]))
    text = console.export_text()
    assert "group streamproc" in text and "total lag 60 records" in text
    assert "worker-1-abc" in text and "unassigned" in text and "2.5" in text
    assert "group idle-group" in text and "no committed offsets" in text
