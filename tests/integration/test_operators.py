"""The operators' "done when" checks, on real Kafka.

1. ``consumer_lag``, ``streamproc lag --json`` and Kafka's own ``ConsumerGroupCommand
   --describe`` agree, partition by partition, on committed offset, log-end offset and lag.
2. A partition whose committed offset stays put while records keep arriving raises
   ``streamproc_partition_stalled`` (a :class:`LagMonitor` with a 3 s threshold), and it drops
   back to 0 once the group commits again.
3. A real worker answers ``/health`` as soon as it listens and ``/ready`` with 503 (and why)
   until it is ready, then 200; after a few hundred events ``/metrics`` and ``/status.json``
   show them, and every family the alert rules and the dashboard use is exported. Before
   the first assignment ``/ready`` says "no partitions assigned": the worker starts the
   status server before Faust.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from streamproc.config import Settings
from streamproc.kafka.clients import client_config
from streamproc.kafka.lag import LagClients, PartitionLag, consumer_lag
from streamproc.kafka.launcher import find_free_ports
from streamproc.kafka.runtime import run_kafka_tool
from streamproc.kafka.topics import ensure_topics
from streamproc.metrics import COUNTER_NAMES, HISTOGRAM_NAMES, METRIC_NAMES, StreamprocMetrics
from streamproc.observe.lag_monitor import LagMonitor
from streamproc.produce import EventProducer
from streamproc.simulate import SimParams, simulate_events
from streamproc.workers import WorkerProcess, wait_for_catch_up

if TYPE_CHECKING:
    from tests.integration.conftest import SettingsFactory

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT_KEY = "test:0123456789abcdef"
GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
#: (committed, log-end, lag) of one partition.
Figures = tuple[int | None, int, int]


# --- helpers ---------------------------------------------------------------------------------


def _produce(settings: Settings, topic: str, per_partition: dict[int, int], tag: str = "") -> None:
    """Write ``per_partition[p]`` small records to partition ``p`` of ``topic``."""
    producer = Producer(client_config(settings, **{"linger.ms": 5}))
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, value=f"{tag}{partition}-{i}".encode(), partition=partition)
    assert producer.flush(30.0) == 0


def _consume_and_commit(
    settings: Settings, group: str, topic: str, targets: dict[int, int]
) -> None:
    """Join ``group`` on ``topic``, read up to ``targets[p]`` records of each partition, commit
    exactly those offsets, and leave the group (so it is empty and stable)."""
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            },
        )
    )
    try:
        consumer.subscribe([topic])
        read = dict.fromkeys(targets, 0)
        deadline = time.monotonic() + 60
        while any(read[p] < targets[p] for p in targets):
            assert time.monotonic() < deadline, f"read only {read} of {targets} from {topic}"
            for msg in consumer.consume(100, 0.5):
                partition = msg.partition()
                if msg.error() is None and partition is not None:
                    read[partition] += 1
        consumer.commit(
            offsets=[TopicPartition(topic, p, n) for p, n in targets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def _commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` for ``group`` without joining it (as a worker's commit would)."""
    consumer = Consumer(client_config(settings, **{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def _end_offsets(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = Consumer(client_config(settings, **{"group.id": "probe-end-offsets"}))
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10.0)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def _from_rows(rows: list[PartitionLag], topic: str) -> dict[int, Figures]:
    return {r.partition: (r.committed, r.log_end, r.lag) for r in rows if r.topic == topic}


def _from_json(doc: list[dict[str, Any]], topic: str) -> dict[int, Figures]:
    return {
        int(r["partition"]): (r["committed"], int(r["log_end"]), int(r["lag"]))
        for r in doc
        if r["topic"] == topic
    }


def _from_group_command(stdout: str, group: str, topic: str) -> dict[int, Figures]:
    """Parse ``--describe``'s table: GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ..."""
    figures: dict[int, Figures] = {}
    for line in stdout.splitlines():
        cols = line.split()
        if len(cols) < 6 or cols[0] != group or cols[1] != topic:
            continue
        current = None if cols[3] == "-" else int(cols[3])
        figures[int(cols[2])] = (current, int(cols[4]), int(cols[5]))
    return figures


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """``(status, body)``; ``(0, b"")`` when nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _series(exposition: str) -> dict[str, float]:
    """Sample lines of a Prometheus exposition: ``name{labels}`` -> value."""
    samples: dict[str, float] = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _labels(series: str) -> list[tuple[str, str]]:
    """The labels of a series name, sorted: ``name{a="1",b="2"}`` -> ``[("a", "1"), ...]``."""
    return sorted(re.findall(r'(\w+)="([^"]*)"', series))


def _sum(samples: dict[str, float], family: str) -> float:
    return sum(v for k, v in samples.items() if k == family or k.startswith(family + "{"))


def _types(exposition: str) -> dict[str, str]:
    """``# TYPE name kind`` lines: name -> kind."""
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.MULTILINE)
    }


# --- 1. lag agrees with Kafka's own tool -----------------------------------------------------


def test_lag_agrees_with_kafka_consumer_groups(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=3)
    ensure_topics(settings)
    topic, group = settings.topic_input, f"{settings.app_id}-lagcheck"
    produced = {0: 10, 1: 15, 2: 20}  # N = 45
    committed = {0: 4, 1: 15, 2: 7}  # M = 26: behind, caught up, behind
    _produce(settings, topic, produced)
    _consume_and_commit(settings, group, topic, committed)
    expected = {p: (committed[p], produced[p], produced[p] - committed[p]) for p in produced}

    ours = _from_rows(consumer_lag(settings, group, topics=[topic]), topic)
    # The workers' own monitor: one kept-open consumer, no admin client, no owners.
    clients = LagClients(settings, group)
    no_admin = pytest.MonkeyPatch()
    no_admin.setattr(
        "streamproc.kafka.lag._admin",
        lambda _s: pytest.fail("the monitor's path opened an admin client"),
    )
    try:
        rows = consumer_lag(settings, group, topics=[topic], clients=clients)
        again = consumer_lag(settings, group, topics=[topic], clients=clients)
    finally:
        no_admin.undo()
        clients.close()
    assert _from_rows(rows, topic) == _from_rows(again, topic) == ours
    assert all(r.member is None for r in rows)

    env = {**os.environ, **settings.to_env()}
    cli = subprocess.run(
        [sys.executable, "-m", "streamproc", "lag", "--group", group, "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    from_cli = _from_json(json.loads(cli.stdout), topic)

    tool = run_kafka_tool(
        settings,
        GROUP_COMMAND,
        ["--bootstrap-server", settings.bootstrap_servers, "--describe", "--group", group],
    )
    assert tool.returncode == 0, tool.stderr
    from_kafka = _from_group_command(tool.stdout, group, topic)

    table = "\n".join(
        f"  p{p}: ours={ours.get(p)} cli={from_cli.get(p)} kafka={from_kafka.get(p)}"
        for p in sorted(produced)
    )
    print(f"lag of {group} on {topic} (committed, log-end, lag):\n{table}")
    assert from_kafka == expected, f"{tool.stdout}\n{table}"
    assert ours == expected, table
    assert from_cli == expected, table


# --- 2. a stalled partition raises its signal ------------------------------------------------


def test_stalled_partition_raises_and_clears(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=3, lag_interval_s=0.5, stall_after_s=3.0)
    ensure_topics(settings)
    topic, group = settings.topic_input, settings.app_id
    _produce(settings, topic, {0: 5, 1: 5, 2: 5})
    _commit(settings, group, topic, {0: 5, 1: 5, 2: 5})  # committed once, caught up

    metrics = StreamprocMetrics.create(CollectorRegistry())
    monitor = LagMonitor.for_settings(settings, metrics, topics=[topic], with_seconds=False)

    def stalled(partition: int) -> float | None:
        return metrics.registry.get_sample_value(
            "streamproc_partition_stalled",
            {"group": group, "topic": topic, "partition": str(partition)},
        )

    async def scenario() -> tuple[float, float]:
        task = asyncio.create_task(monitor.run())
        try:
            # Records keep arriving on partitions 0 and 1; nobody commits. Partition 2 idles.
            started = time.monotonic()
            tick = 0
            while not (stalled(0) == 1 and stalled(1) == 1):
                assert time.monotonic() - started < 60, (
                    f"no stall signal after 60 s: {[stalled(p) for p in range(3)]}"
                )
                tick += 1
                await asyncio.to_thread(_produce, settings, topic, {0: 2, 1: 2}, f"t{tick}-")
                await asyncio.sleep(0.5)
            raised_after = time.monotonic() - started
            assert stalled(2) == 0, "an idle partition (no new records) is not stalled"
            assert monitor.stalled == {(topic, 0), (topic, 1)}

            # The group commits again: the signal clears.
            ends = await asyncio.to_thread(_end_offsets, settings, topic, [0, 1, 2])
            await asyncio.to_thread(_commit, settings, group, topic, ends)
            cleared_at = time.monotonic()
            while not (stalled(0) == 0 and stalled(1) == 0):
                assert time.monotonic() - cleared_at < 30, (
                    f"stall signal not cleared: {[stalled(p) for p in range(3)]}"
                )
                await asyncio.sleep(0.2)
            return raised_after, time.monotonic() - cleared_at
        finally:
            monitor.stop()
            await task

    raised_after, cleared_after = asyncio.run(scenario())
    print(f"stalled raised after {raised_after:.1f} s, cleared {cleared_after:.1f} s after commit")
    assert raised_after >= settings.stall_after_s
    assert (
        metrics.registry.get_sample_value(
            "streamproc_consumer_lag_records", {"group": group, "topic": topic, "partition": "0"}
        )
        == 0
    )


# --- 3. /health, /ready, /metrics and /status.json of a real worker --------------------------


def _alert_and_dashboard_names() -> set[str]:
    text = (REPO / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8")
    text += (REPO / "deploy/grafana/dashboards/streamproc.json").read_text(encoding="utf-8")
    return set(re.findall(r"streamproc_[a-z_]+", text))


def _family_of(series: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix) and series.removesuffix(suffix) in HISTOGRAM_NAMES:
            return series.removesuffix(suffix)
    return series


def _wait_for_health(base: str, worker: WorkerProcess, deadline: float) -> None:
    while _get(f"{base}/health", timeout=0.5)[0] != 200:
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, f"/health never answered\n{worker.log_tail()}"
        time.sleep(0.05)


def test_ready_says_unassigned_before_the_first_assignment(
    make_settings: SettingsFactory, spawn_worker: Any
) -> None:
    settings = make_settings(agents="ingest", snapshot_keys=SNAPSHOT_KEY, partitions=3)
    ensure_topics(settings)
    port = find_free_ports(1)
    base = f"http://127.0.0.1:{port}"
    worker: WorkerProcess = spawn_worker(settings, "worker", STREAMPROC_METRICS_PORT=str(port))
    deadline = time.monotonic() + 120
    _wait_for_health(base, worker, deadline)
    code, body = _get(f"{base}/ready")
    worker.stop()
    assert code == 503, body
    doc = json.loads(body)
    assert doc["assigned_partitions"] == 0
    assert any("no partitions assigned" in reason for reason in doc["failing"]), doc


def test_worker_endpoints_before_and_after_assignment(
    make_settings: SettingsFactory, spawn_worker: Any
) -> None:
    settings = make_settings(
        agents="ingest,model", snapshot_keys=SNAPSHOT_KEY, partitions=3, lag_interval_s=1.0
    )
    ensure_topics(settings)
    port = find_free_ports(1)
    base = f"http://127.0.0.1:{port}"
    worker: WorkerProcess = spawn_worker(settings, "worker", STREAMPROC_METRICS_PORT=str(port))

    # /health answers as soon as the server listens; until the worker is ready, /ready
    # answers 503 with a JSON body naming every failing condition.
    deadline = time.monotonic() + 120
    _wait_for_health(base, worker, deadline)
    answers: list[tuple[int, dict[str, Any]]] = []
    while True:
        code, body = _get(f"{base}/ready")
        doc = json.loads(body)
        answers.append((code, doc))
        if code == 200:
            break
        assert code == 503, (code, body)
        assert doc["ready"] is False and doc["failing"], doc
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, f"never ready: {doc}\n{worker.log_tail()}"
        time.sleep(0.1)
    print(f"/ready answers until ready: {[(c, d['failing']) for c, d in answers]}")
    ready = answers[-1][1]
    assert ready["ready"] is True and ready["failing"] == []
    assert ready["assigned_partitions"] == 6  # 3 input + 3 valid partitions, one worker
    assert ready["broker_ok"] is True
    assert _get(f"{base}/health")[0] == 200

    # A few hundred events through both agents.
    simulation = simulate_events(SimParams(n_events=300, n_users=50, n_titles=20, seed=7), settings)
    with EventProducer(settings) as producer:
        for record in simulation:
            producer.send_raw(record.key, record.value)
        assert producer.flush(30.0) == 0
    wait_for_catch_up(
        settings, [settings.topic_input, settings.topic_valid], timeout=180, workers=[worker]
    )

    # The lag monitor and the status sampler run on their own clocks: poll until they caught up.
    lag_family = "streamproc_consumer_lag_records"
    deadline = time.monotonic() + 30
    while True:
        exposition = _get(f"{base}/metrics")[1].decode()
        samples = _series(exposition)
        status = json.loads(_get(f"{base}/status.json")[1])
        lag_series = [k for k in samples if k.startswith(lag_family + "{")]
        if (
            _sum(samples, "streamproc_records_in_total") > 0
            and _sum(samples, "streamproc_predictions_total") > 0
            and len(lag_series) == 6
            # the monitor measures every interval: wait for a measurement after the catch-up
            and all(samples[k] == 0 for k in lag_series)
            and status["throughput"]["in_per_s"] > 0
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    records_in = _sum(samples, "streamproc_records_in_total")
    predictions = _sum(samples, "streamproc_predictions_total")
    print(
        f"/metrics: records_in={records_in:.0f} predictions={predictions:.0f} "
        f"lag series={len(lag_series)}; /status.json: in_per_s="
        f"{status['throughput']['in_per_s']:.1f} records_in={status['records_in']}"
    )
    assert records_in >= simulation.manifest.counts["records"]
    assert predictions > 0
    assert sorted(_labels(k) for k in lag_series) == sorted(
        sorted({"group": settings.app_id, "topic": t, "partition": str(p)}.items())
        for t in (settings.topic_input, settings.topic_valid)
        for p in range(3)
    )
    assert all(samples[k] == 0 for k in lag_series), "caught up: every lag is 0"
    assert status["throughput"]["in_per_s"] > 0
    assert status["records_in"][settings.topic_input] >= simulation.manifest.counts["records"]
    assert sum(status["predictions"].values()) > 0
    assert len(status["lag"]) == 6

    # Every family is exported under its PromQL name, counters with _total; every name the
    # alert rules and the dashboard query is one of them.
    types = _types(exposition)
    for family in METRIC_NAMES:
        expected = (
            "counter" if family in COUNTER_NAMES
            else "histogram" if family in HISTOGRAM_NAMES
            else "gauge"
        )  # fmt: skip
        assert types.get(family) == expected, f"{family}: TYPE {types.get(family)!r}"
    assert all(f.endswith("_total") for f in types if types[f] == "counter"), types
    for name in sorted(_alert_and_dashboard_names()):
        assert _family_of(name) in types, f"{name} is queried but /metrics has no such family"
    for name in (
        "streamproc_records_in_total",
        "streamproc_records_out_total",
        "streamproc_predictions_total",
        "streamproc_consumer_lag_records",
        "streamproc_consumer_lag_seconds",
        "streamproc_partition_stalled",
        "streamproc_worker_up",
        "streamproc_lag_check_timestamp_seconds",
        "streamproc_event_to_prediction_seconds_bucket",
        "streamproc_process_latency_seconds_bucket",
        "streamproc_stage_seconds_bucket",
    ):
        assert any(k == name or k.startswith(name + "{") for k in samples), f"no {name} sample"
    assert samples["streamproc_worker_up"] == 1

    assert worker.stop() == 0, worker.log_tail()
