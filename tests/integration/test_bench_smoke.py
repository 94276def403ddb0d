"""`streamproc bench` end to end on the session's Kafka, with a tiny workload.

Checks that every figure is there, positive and consistent, and that every record is
accounted for, in the pipeline and in the reference loop; timings are not asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streamproc.cli import root
from streamproc.learning.specs import get_model_specs

pytestmark = pytest.mark.integration

EVENTS = 3000


def test_bench_end_to_end(kafka: Any, make_settings: Any, cli: CliRunner, tmp_path: Path) -> None:
    settings = make_settings()
    out = tmp_path / "results"
    json_path = tmp_path / "bench.json"
    args = [
        "--bootstrap-servers", settings.bootstrap_servers, "bench",
        "--events", str(EVENTS), "--runs", "1", "--workers", "1", "--latency-seconds", "3",
        "--json", str(json_path), "--out", str(out), "--data-dir", str(tmp_path / "data"),
    ]  # fmt: skip
    result = cli.invoke(root, args)
    assert result.exit_code == 0, result.output
    data = json.loads(json_path.read_text())
    assert json.loads((out / "results.json").read_text()) == data
    assert "| throughput, 1 worker |" in (out / "results.md").read_text()
    assert data["command"].startswith("streamproc --bootstrap-servers ")
    assert "bench --events 3000 --runs 1 --workers 1" in data["command"]

    figures = {f["key"]: f for f in data["figures"]}
    wanted = [
        "throughput_1", "reference", "ratio_1", "rss_1", "rss_reference", "worker_cpu_1",
        "reference_cpu", *(f"latency_{p}_{q}" for p in (50, 80) for q in ("p50", "p95", "p99")),
    ]  # fmt: skip
    if kafka.info is not None:  # a broker this machine runs: its CPU time is measured
        wanted += ["broker_cpu_1", "broker_cpu_reference"]
    for key in wanted:
        assert key in figures, f"figure {key} missing from {sorted(figures)}"
        assert figures[key]["runs"] == 1
        assert figures[key]["median"] > 0, figures[key]
    assert figures["ratio_1"]["median"] == pytest.approx(
        figures["throughput_1"]["median"] / figures["reference"]["median"]
    )
    for point in (50, 80):
        p50, p95, p99 = (figures[f"latency_{point}_{q}"]["median"] for q in ("p50", "p95", "p99"))
        assert p50 <= p95 <= p99

    # every input record accounted for, and one prediction per model per valid play
    assert data["checks"] and all(c["ok"] for c in data["checks"]), data["checks"]
    n_models = len(get_model_specs(settings.models))
    plays = data["settings"]["plays"]
    (run,) = data["runs"]
    counts = run["pipeline"]["1"]["counts"]
    assert counts["input"] == EVENTS
    assert counts["valid"] + counts["dead_letters"] + counts["duplicates_dropped"] == EVENTS
    assert counts["dead_letters"] == data["settings"]["invalid"] > 0
    assert counts["predictions"] == plays * n_models
    reference = run["reference"]["counts"]
    assert reference["input"] == EVENTS
    assert reference.get("delivery_failures", 0) == 0
    for spec in get_model_specs(settings.models):
        assert reference[f"predictions_{spec.name}"] == plays
    assert {k: reference[k] for k in ("valid", "dead_letters", "duplicates_dropped")} == {
        k: counts[k] for k in ("valid", "dead_letters", "duplicates_dropped")
    }

    # the latency points: every play sent got its predictions, at about the offered rate
    for point in run["latency"]:
        assert point["sent"] > 0 and point["plays"] > 0
        assert point["predictions_matched"] == point["plays"] * n_models
        assert point["achieved_rate_eps"] == pytest.approx(point["offered_rate_eps"], rel=0.2)

    steps = {s["name"]: s for s in data["breakdown"]["steps"]}
    for name in ("decode input (Avro → dict)", "Faust topic.send, awaited (per output record)",
                 "confluent-kafka produce + poll(0) (per output record)"):  # fmt: skip
        assert steps[name]["per_call_us"] > 0
    assert data["machine"]["cores"] >= 1 and data["machine"]["versions"]["river"]
