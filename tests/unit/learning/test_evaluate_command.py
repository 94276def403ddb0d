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


def test_quality_targets_from_label_score_reference_triples() -> None:
    from streamproc.learning.evaluate import quality_targets

    params = EvaluationParams()
    eng = [(1.0, 0.9, 0.8), (0.0, 0.2, 0.3), (1.0, 0.4, 0.7), (0.0, 0.6, 0.1)]
    qoe = [(0.1, 0.1, 0.12), (0.2, 0.3, 0.2)]  # MAE 0.05 against the oracle's 0.01
    aff = [(1.0, 0.9, 0.5), (0.0, 0.2, 0.5)]
    targets = {t.name: t for t in quality_targets(params, eng=eng, qoe=qoe, affinity=aff)}
    assert targets["engagement"].value == pytest.approx(0.75)
    assert targets["engagement"].reference == pytest.approx(1.0)
    assert not targets["engagement"].passed  # 0.75 < 1.0 - 0.03
    assert targets["qoe"].value == pytest.approx(0.05)
    assert targets["qoe"].reference == pytest.approx(0.01)
    assert not targets["qoe"].passed
    assert targets["affinity"].value < targets["affinity"].reference
    assert targets["affinity"].passed


def test_report_with_the_figures_of_a_run_through_kafka(settings: Settings) -> None:
    report = evaluate_models(EvaluationParams(n_events=3000, warmup_sessions=50), settings)
    text = format_report(report, figures=["served predictions: 900"], passed=False)
    assert "served predictions: 900" in text
    assert "PartitionLearner.process" not in text
    assert text.endswith("overall: FAIL")
