"""`streamproc evaluate --kafka` end to end on the session's Kafka: the quality targets hold
on the scores the worker served.

The world is small enough for the targets to hold within a test's time (150 users and
titles, 180,000 events, one partition so one learner sees every session, 5,000 warm-up
sessions; about 85 s on a 2-core machine). The full-size run (600,000 events, 1,000 users, 6
partitions) is in the README. Checked here: every target holds, every session label has the
score a worker served for it, the served scores equal a replay of the valid topic, and the
figures come out of the predictions topic, not the learners. One partition also makes the
partition's shared state (its pending sessions) larger than 1 MB, the size that once stopped
the model agent (snapshots are compressed and the producer takes records that large).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streamproc.cli import root

pytestmark = pytest.mark.integration


def test_quality_targets_hold_on_the_scores_served_through_kafka(
    make_settings: Any, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("STREAMPROC_PARTITIONS", "1")
    args = [
        "--bootstrap-servers", settings.bootstrap_servers, "evaluate", "--kafka",
        "--events", "180000", "--users", "150", "--titles", "150",
        "--warmup-sessions", "5000", "--log-dir", str(tmp_path), "--json",
    ]  # fmt: skip
    result = cli.invoke(root, args)
    data = json.loads(result.stdout)
    targets = {t["name"]: t for t in data["targets"]}
    assert result.exit_code == 0, (targets, result.stderr[-3000:])
    assert data["passed"] is True
    engagement, qoe, affinity = targets["engagement"], targets["qoe"], targets["affinity"]
    assert engagement["value"] >= engagement["reference"] - 0.03, engagement
    assert qoe["value"] <= 1.25 * qoe["reference"], qoe
    assert affinity["value"] < affinity["reference"], affinity
    assert data["events"] == 180_000
    assert data["labels"] > 30_000
    assert data["labels_without_prediction"] == 0
    assert data["equal_to_replay"] == 1.0  # the worker served what a replay computes
    assert data["repeated_predictions"] == 0  # no fault: nothing delivered twice
    assert data["predictions"] == 3 * data["sessions"]  # one per model per valid play
    log = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert "snapshot of partitions [0]" in log  # large state, snapshotted all the same
    assert "not written" not in log and "Crashed" not in log
