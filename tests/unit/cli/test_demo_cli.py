"""`streamproc demo` flags: scenario, onset, partitions, plot (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from streamproc.cli import root
from streamproc.config import load_settings
from streamproc.demo import DEFAULT_ONSET_FRACTION, DemoOptions
from streamproc.simulate.scenarios import SCENARIO_ALIASES


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _choices(command: str) -> list[str]:
    option = next(p for p in root.commands[command].params if p.name == "scenario")
    assert isinstance(option.type, click.Choice)
    return list(option.type.choices)


def test_demo_and_simulate_accept_the_same_scenarios() -> None:
    assert _choices("demo") == _choices("simulate")
    assert {"stationary", *SCENARIO_ALIASES} <= set(_choices("demo"))


def test_demo_help_lists_the_drift_flags(runner: CliRunner) -> None:
    result = runner.invoke(root, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    for flag in ("--scenario", "--drift-at", "--partitions", "--plot", "--events", "--rate"):
        assert flag in result.output
    assert "data-drift" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "drift"], "'drift' is not one of"),
        (["--scenario", "stationary", "--drift-at", "5"], "--drift-at needs a drift scenario"),
        (["--events", "100", "--drift-at", "100"], "100 is not below --events 100"),
        (["--drift-at", "-1"], "--drift-at"),
        (["--drift-at", "soon"], "'soon' is not a valid integer"),
        (["--partitions", "0"], "--partitions"),
        (["--plot", "/no/such/dir/drift.png"], "directory /no/such/dir does not exist"),
        (["--plot", "x.png", "--agents", "ingest"], "--plot needs the model agent"),
    ],
)
def test_bad_demo_flags_exit_2_with_a_message(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(root, ["demo", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plot_must_not_be_a_directory(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(root, ["demo", "--plot", str(tmp_path)])
    assert result.exit_code == 2 and "--plot" in result.output


def test_default_options_are_a_data_drift_at_40_percent() -> None:
    options = DemoOptions()
    assert (options.scenario_name, options.scenario_label) == (
        "throttled_cdn",
        "data-drift (throttled_cdn)",
    )
    assert options.onset == int(options.events * DEFAULT_ONSET_FRACTION) == 16_000
    params = options.sim_params(load_settings())
    assert params.scenario == "throttled_cdn(onset=16000)"
    assert (params.n_users, params.n_titles, params.sessions_per_minute) == (400, 120, 2.0)
    assert DemoOptions(scenario="stationary").onset is None
    assert DemoOptions(scenario="abrupt", drift_at=5).sim_params(load_settings()).scenario == (
        "taste_shift(onset=5)"
    )
    # Long runs get more sessions a minute, so that no event is older than the ingest allows.
    long = DemoOptions(events=2_000_000).sim_params(load_settings())
    assert long.sessions_per_minute is not None and long.sessions_per_minute > 2.0
