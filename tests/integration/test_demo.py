"""`streamproc demo` end to end: its own Kafka, a worker, the simulator, the end report.

The stationary run checks the books and the clean-up; the drift run checks that the live output
and the drift report show the data drift, the challenger and its promotion. It uses 1
partition and seed 0, on which the workers (as ``PartitionDrift`` in process) signal data
drift at valid offset 15,599, start a qoe challenger at 19,925 and promote it at 28,088.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamproc.kafka.launcher import find_free_ports, kafka_status

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_balances_the_books_and_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
    env["STREAMPROC_KAFKA_PORT"] = str(find_free_ports(2))
    env["STREAMPROC_METRICS_PORT"] = str(find_free_ports(1, low=32000, high=33000))
    result = subprocess.run(
        [sys.executable, "-m", "streamproc", "demo", "--events", "3000", "--rate", "0",
         "--scenario", "stationary", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "== streamproc demo: end report ==" in result.stdout
    assert "balanced    yes" in result.stdout
    assert "valid       3,000" in result.stdout
    assert "as expected; one per model per play" in result.stdout
    assert "0 detection(s) (as expected on a stationary stream)" in result.stdout
    # The snapshot key is kept for later runs, private, and never printed.
    key_file = data_dir / "snapshot.key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert key_file.read_text().strip().split(":", 1)[1] not in output
    # Nothing is left running: no broker, no worker.
    assert kafka_status(data_dir / "kafka").state == "stopped"
    pids = [int(p) for p in re.findall(r"worker \d+: pid (\d+)", result.stdout)]
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for log in (data_dir / "logs").glob("worker-*.log"):
        assert "Closing event loop" in log.read_text(errors="replace"), log


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
    env["STREAMPROC_KAFKA_PORT"] = str(find_free_ports(2))
    env["STREAMPROC_METRICS_PORT"] = str(find_free_ports(1, low=32000, high=33000))
    return env


def _offset(line: str) -> int:
    match = re.search(r"valid offset ([\d,]+)", line)
    assert match, line
    return int(match.group(1).replace(",", ""))


def test_demo_drift_run_shows_the_signal_the_challenger_and_the_promotion(tmp_path: Path) -> None:
    data_dir, plot = tmp_path / "demo", tmp_path / "drift.png"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streamproc", "demo", "--scenario", "data-drift",
         "--events", "32000", "--drift-at", "14000", "--partitions", "1", "--seed", "0",
         "--rate", "0", "--data-dir", str(data_dir), "--plot", str(plot)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "balanced    yes" in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: plain lines

    # Live: one plain line per signal, as the workers raise them.
    live = [line for line in result.stdout.splitlines() if "] drift signal p0 " in line]
    data = next(line for line in live if ": data/psi/" in line)
    challenger = next(line for line in live if "action challenger_started" in line)
    promoted = next(line for line in live if "action promoted" in line)
    assert "qoe v2:" in promoted
    assert _offset(data) < _offset(challenger) < _offset(promoted)

    # The drift report, from what the workers wrote to the topics.
    report = result.stdout.split("== Drift report ==", 1)[1]
    assert "data-drift (throttled_cdn); onset index 14,000" in report
    assert re.search(r"p0   inputs\s+data/psi/\S+\s+\+[\d,]+", report), report
    assert re.search(
        r"p0   qoe\s+(label|concept)/adwin\s+\+[\d,]+\s+\+[\d,]+\s+v2 \+[\d,]+", report
    )
    assert "1 promotion(s)" in report and "promoted: qoe p0 v2" in report
    assert "after onset, v2" in report  # served quality of the promoted version
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert kafka_status(data_dir / "kafka").state == "stopped"
    print(
        f"\ndemo drift run: {took:.0f} s; {data.strip()}; {challenger.strip()}; {promoted.strip()}"
    )
