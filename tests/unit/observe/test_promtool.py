"""`promtool check` on the Prometheus config and alert rules, and `promtool test rules`.

Marked ``integration`` so that ``make unit`` stays free of external tools; ``make test`` runs
it. A missing promtool is a failure, not a skip: install it with
``apt-get install prometheus`` (Debian ships promtool in that package).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not installed: `apt-get install prometheus` (Debian/Ubuntu) provides "
            "it, or put a promtool from a Prometheus release on PATH"
        )
    return subprocess.run(
        [exe, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
