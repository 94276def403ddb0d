"""`streamproc simulate` and `streamproc produce` flags (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streamproc.cli import main, root
from streamproc.errors import BrokerUnavailableError
from streamproc.produce import EventProducer


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_simulate_help_lists_its_flags(runner: CliRunner) -> None:
    result = runner.invoke(root, ["simulate", "--help"])
    assert result.exit_code == 0, result.output
    for flag in (
        "--events",
        "--rate",
        "--users",
        "--titles",
        "--invalid-fraction",
        "--duplicate-fraction",
        "--seed",
        "--format",
        "--manifest",
        "--scenario",
    ):
        assert flag in result.output
    assert "stationary" in result.output


def test_produce_help(runner: CliRunner) -> None:
    result = runner.invoke(root, ["produce", "--help"])
    assert result.exit_code == 0, result.output
    assert "[FILE|-]" in result.output and "--format" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--invalid-fraction", "2"], "--invalid-fraction"),
        (["--duplicate-fraction", "-0.5"], "--duplicate-fraction"),
        (["--events", "1"], "--events"),
        (["--events", "many"], "'many' is not a valid integer"),
        (["--rate", "-5"], "--rate"),
        (["--format", "xml"], "'xml' is not one of 'avro', 'json'"),
        (["--scenario", "drift"], "'drift' is not one of"),
        (["--users", "0"], "--users"),
        (["--no-such-flag"], "No such option: --no-such-flag"),
    ],
)
def test_bad_simulate_flags_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(root, ["simulate", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_produce_flags_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(root, ["produce", "--format", "xml"])
    assert result.exit_code == 2 and "'xml' is not one of" in result.output
    result = runner.invoke(root, ["produce", "/no/such/file.jsonl"])
    assert result.exit_code == 2 and "/no/such/file.jsonl" in result.output


def test_unreachable_broker_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(
        root, ["--bootstrap-servers", "127.0.0.1:1", "simulate", "--events", "10"]
    )
    assert isinstance(result.exception, BrokerUnavailableError)
    assert "127.0.0.1:1" in str(result.exception)


def test_main_exits_3_when_the_broker_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--bootstrap-servers", "127.0.0.1:1", "produce", "-"])
    assert exit_info.value.code == 3
    assert "BrokerUnavailableError: no Kafka broker answered at 127.0.0.1:1" in (
        capsys.readouterr().err
    )


def test_produce_exits_1_when_a_line_is_rejected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker check passes trivially here; the one line is rejected before sending.
    monkeypatch.setattr(EventProducer, "check_connection", lambda self, timeout=5.0: None)
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"event_id": 7}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["--bootstrap-servers", "127.0.0.1:1", "produce", str(lines)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert 'line 1: rejected: ViewingEvent field "event_id" must be string, got 7' in err
    assert "read 1, sent 0, rejected 1, failed 0" in err
