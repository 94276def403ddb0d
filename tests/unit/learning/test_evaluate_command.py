"""``streamproc evaluate``: flags, table and JSON output (tiny sizes: not a quality check)."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from streamproc.cli._common import root
from streamproc.cli.evaluate import command
from streamproc.config import Settings
from streamproc.learning.evaluate import EvaluationParams, evaluate_models, format_report

SMALL = ["--events", "3000", "--users", "20", "--titles", "15", "--warmup-sessions", "50"]


@pytest.fixture
def cli() -> CliRunner:
    if "evaluate" not in root.commands:
        root.add_command(command)
    return CliRunner()


def test_json_report(cli: CliRunner, settings: Settings) -> None:
    result = cli.invoke(root, ["evaluate", *SMALL, "--seed", "3", "--json"])
    assert result.exit_code in (0, 1), result.output
    report = orjson.loads(result.stdout)
    assert report["events"] == 3000
    assert report["params"]["seed"] == 3
    assert [t["name"] for t in report["targets"]] == ["engagement", "qoe", "affinity"]
    assert report["passed"] == (result.exit_code == 0)
    assert report["us_per_event"] > 0


def test_table_report(cli: CliRunner, settings: Settings) -> None:
    result = cli.invoke(root, ["evaluate", *SMALL])
    assert result.exit_code in (0, 1), result.output
    assert "roc_auc" in result.output and "PartitionLearner.process" in result.output
    assert ("PASS" in result.output) or ("FAIL" in result.output)


def test_same_seed_same_figures(settings: Settings) -> None:
    params = EvaluationParams(n_events=2_000, n_users=10, n_titles=10, warmup_sessions=20)
    a, b = evaluate_models(params, settings), evaluate_models(params, settings)
    assert [(t.value, t.reference) for t in a.targets] == [
        (t.value, t.reference) for t in b.targets
    ]
    assert "seed 42" in format_report(a)
