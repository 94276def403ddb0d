"""`streamproc bench` without a broker: help and refusals of bad input (no traceback)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from benchmarks import DEFAULT_EVENTS
from benchmarks.harness import BenchOptions
from streamproc.cli import root
from streamproc.errors import ConfigError


def test_help_lists_the_options_and_defaults() -> None:
    result = CliRunner().invoke(root, ["bench", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--events",
        "--runs",
        "--workers",
        "--skip-latency",
        "--skip-reference",
        "--bootstrap-servers",
        "--json",
        "--out",
        "--profile",
    ):
        assert flag in result.output
    assert f"default: {DEFAULT_EVENTS}" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "1,x"], "expected a comma list of worker counts from 1 to 16"),
        (["--workers", "0"], "got '0'"),
        (["--events", "10"], "10 is not in the range x>=100"),
        (["--runs", "0"], "0 is not in the range 1<=x<=20"),
        (["--latency-seconds", "0.1"], "0.1 is not in the range x>=1.0"),
        (["--latency-load", "0.5,2"], "fractions of the maximum in (0, 1.5]"),
        (["--latency-load", "half"], "got 'half'"),
    ],
)
def test_bad_input_is_a_usage_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(root, ["bench", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="--runs must be at least 1"):
        BenchOptions(runs=0)
    with pytest.raises(ConfigError, match="latency load fractions"):
        BenchOptions(latency_fractions=(0.0,))
