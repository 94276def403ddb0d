"""The worker's /status page rendered by a real headless browser (Debian's chromium).

A worker with a metrics port processes a few hundred simulated events; chromium loads
``/status``, runs its JavaScript (it polls ``/status.json``) and dumps the rendered DOM: the
records, predictions and events/s figures must be non-zero and the lag table filled. A
screenshot is kept in ``test-artifacts/status-page.png`` for people to look at.

The browser is part of the test set-up (``make tools`` installs it): without it this test
fails with the install hint, it does not skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from streamproc.config import Settings
from streamproc.kafka.launcher import find_free_ports
from streamproc.kafka.topics import ensure_topics
from streamproc.produce import EventProducer
from streamproc.simulate import SimParams, simulate_events
from streamproc.workers import WorkerProcess, wait_for_catch_up

if TYPE_CHECKING:
    from tests.integration.conftest import SettingsFactory

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-artifacts" / "status-page.png"
SNAPSHOT_KEY = "test:0123456789abcdef"
INSTALL_HINT = (
    "chromium is not installed, and the status-page test needs a real browser: run `make tools` "
    "(or, as root: apt-get install -y --no-install-recommends chromium)"
)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def _browse(user_data_dir: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Load ``url`` headless, let its scripts run for 8 s of virtual time, then act (``extra``)."""
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # the tests may run as root, where chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data_dir}",
        "--virtual-time-budget=8000",
        *extra,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"chromium exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _figure(dom: str, element_id: str) -> float:
    """The number an element of the rendered page shows (``1,234.5`` -> ``1234.5``)."""
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"no element #{element_id} in the rendered page"
    text = match.group(1).replace(",", "").replace("\u202f", "").replace("\xa0", "").strip()
    assert re.fullmatch(r"\d+(\.\d+)?", text), f"#{element_id} shows {match.group(1)!r}"
    return float(text)


def _start_worker(settings: Settings, spawn_worker: Any) -> tuple[WorkerProcess, str]:
    port = find_free_ports(1)
    base = f"http://127.0.0.1:{port}"
    worker: WorkerProcess = spawn_worker(settings, "worker", STREAMPROC_METRICS_PORT=str(port))
    deadline = time.monotonic() + 120
    while _get_json(f"{base}/ready")[0] != 200:
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, f"worker never ready\n{worker.log_tail()}"
        time.sleep(0.2)
    return worker, base


def test_status_page_renders_live_figures(
    make_settings: SettingsFactory, spawn_worker: Any, tmp_path: Path
) -> None:
    _chromium()  # fail first, before starting anything, when the browser is missing
    settings = make_settings(
        agents="ingest,model", snapshot_keys=SNAPSHOT_KEY, partitions=3, lag_interval_s=1.0
    )
    ensure_topics(settings)
    worker, base = _start_worker(settings, spawn_worker)

    simulation = simulate_events(SimParams(n_events=300, n_users=50, n_titles=20, seed=5), settings)
    with EventProducer(settings) as producer:
        for record in simulation:
            producer.send_raw(record.key, record.value)
        assert producer.flush(30.0) == 0
    wait_for_catch_up(
        settings, [settings.topic_input, settings.topic_valid], timeout=180, workers=[worker]
    )
    deadline = time.monotonic() + 20  # the status sampler ticks every 2 s
    while True:
        status = _get_json(f"{base}/status.json")[1]
        if status["throughput"]["in_per_s"] > 0 and len(status["lag"]) == 6:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)

    dom = _browse(tmp_path / "chromium-dom", f"{base}/status", "--dump-dom").stdout
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    _browse(
        tmp_path / "chromium-shot",
        f"{base}/status",
        f"--screenshot={SCREENSHOT}",
        "--window-size=1280,900",
    )
    worker.stop()

    figures = {
        name: _figure(dom, name)
        for name in ("rate-in", "rate-out", "records-in", "records-out", "predictions-total")
    }
    print(f"rendered figures: {figures}; screenshot: {SCREENSHOT}")
    records = simulation.manifest.counts["records"]
    assert figures["records-in"] >= records  # input + valid topics
    assert figures["records-out"] > 0
    assert figures["predictions-total"] > 0
    assert figures["rate-in"] > 0
    summary = dom[dom.index('id="summary"') :].split("</div>", 1)[0]
    assert "cannot read status.json" not in summary, summary
    assert 'class="ok">ready<' in summary, f"the summary line says the worker is ready: {summary}"
    lag_table = dom[dom.index('id="lag"') :].split("</table>", 1)[0]
    assert lag_table.count("<tr>") == 1 + 6, "a header and one row per owned partition"
    assert "no data yet" not in dom.split('id="chart-throughput"', 1)[1].split("</svg>", 1)[0]
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 10_000, "a blank page compresses to almost nothing"
