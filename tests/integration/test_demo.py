"""`streamproc demo` end to end: its own Kafka, a worker, the simulator, the end report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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
         "--data-dir", str(data_dir)],
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
