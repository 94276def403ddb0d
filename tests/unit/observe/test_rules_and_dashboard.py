"""Alert rules, Prometheus config and the Grafana dashboard only use metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamproc.metrics import METRIC_NAMES, metric_family

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamproc.json"

TOKEN = re.compile(r"streamproc_[a-z_]+")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def unknown_metrics(text: str) -> set[str]:
    return {t for t in TOKEN.findall(text) if metric_family(t) is None}


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(ALERTS)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    nested = [p for row in panels if row.get("type") == "row" for p in row.get("panels", [])]
    return [p for p in panels + nested if p.get("type") != "row"]


def provisioned_uid() -> str:
    [source] = load_yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_alerts_use_known_metrics_and_are_complete() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        where = f"alert {rule.get('alert')!r} in {ALERTS.name}"
        assert TOKEN.search(rule["expr"]), f"{where}: uses no streamproc metric"
        unknown = unknown_metrics(rule["expr"])
        assert not unknown, f"{where}: unknown metrics {unknown}"
        assert "for" in rule, f"{where}: no 'for'"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, where
        assert rule["annotations"]["summary"].strip(), where
        for text in rule["annotations"].values():
            assert not unknown_metrics(text), f"{where}: annotation names {unknown_metrics(text)}"


def test_alerts_cover_the_operator_concerns() -> None:
    used = {metric_family(t) for r in alert_rules() for t in TOKEN.findall(r["expr"])}
    for needed in (
        "streamproc_consumer_lag_records",
        "streamproc_partition_stalled",
        "streamproc_dead_letters_total",
        "streamproc_records_in_total",
        "streamproc_predictions_total",
        "streamproc_model_quality",
        "streamproc_drift_signals_total",
        "streamproc_snapshots_refused_total",
    ):
        assert needed in used, f"no alert uses {needed}"
    lag_rule = next(r for r in alert_rules() if r["alert"] == "StreamprocConsumerLagHigh")
    assert "deriv(" in lag_rule["expr"] or "delta(" in lag_rule["expr"]


def test_prometheus_config_scrapes_workers_by_dns_and_loads_the_rules() -> None:
    doc = load_yaml(PROMETHEUS)
    assert [Path(f).name for f in doc["rule_files"]] == [ALERTS.name]
    [job] = [j for j in doc["scrape_configs"] if j["job_name"] == "streamproc-worker"]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == 9100 and sd["type"] == "A"
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_dashboard_is_valid_grafana_and_names_the_provisioned_datasource() -> None:
    uid = provisioned_uid()
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for key in ("uid", "title", "panels", "schemaVersion", "annotations", "time"):
        assert key in doc, f"dashboard has no {key!r}"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    panels = dashboard_panels()
    assert panels
    for panel in panels:
        where = f"panel {panel.get('title')!r}"
        assert panel["type"] in {"timeseries", "stat", "table", "bargauge", "gauge"}, where
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h")), where
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, where
        assert panel["datasource"]["uid"] == uid, where
        assert panel["targets"], f"{where}: no targets"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, where
            assert TOKEN.search(target["expr"]), f"{where}: uses no streamproc metric"
            unknown = unknown_metrics(target["expr"])
            assert not unknown, f"{where}: unknown metrics {unknown}"


def test_dashboard_shows_what_operators_need() -> None:
    exprs = " ".join(t["expr"] for p in dashboard_panels() for t in p["targets"])
    assert "histogram_quantile(" in exprs
    for needed in (
        "streamproc_records_in_total",
        "streamproc_records_out_total",
        "streamproc_consumer_lag_records",
        "streamproc_dead_letters_total",
        "streamproc_model_quality",
        "streamproc_model_version",
        "streamproc_process_latency_seconds_bucket",
    ):
        assert needed in exprs, f"no panel shows {needed}"


def test_drift_signals_are_annotations() -> None:
    uid = provisioned_uid()
    annotations = json.loads(DASHBOARD.read_text(encoding="utf-8"))["annotations"]["list"]
    drift = [a for a in annotations if "streamproc_drift_signals_total" in a.get("expr", "")]
    assert drift, "no annotation query on streamproc_drift_signals_total"
    for annotation in annotations:
        if "expr" in annotation:
            assert annotation["datasource"]["uid"] == uid
            assert not unknown_metrics(annotation["expr"])


def test_dashboard_provider_points_at_a_folder() -> None:
    [provider] = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_every_metric_is_on_the_dashboard_or_in_an_alert(name: str) -> None:
    text = DASHBOARD.read_text(encoding="utf-8") + ALERTS.read_text(encoding="utf-8")
    families = {metric_family(t) for t in TOKEN.findall(text)}
    assert name in families, f"{name} is exported but neither charted nor alerted on"
