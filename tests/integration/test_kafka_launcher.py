"""The local Kafka launcher, topic creation and the kafka/topics commands on a real broker."""

from __future__ import annotations

import json
import logging
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from streamproc.cli import root
from streamproc.config import Settings
from streamproc.errors import LauncherError
from streamproc.kafka.clients import client_config, wait_for_broker
from streamproc.kafka.launcher import (
    kafka_status,
    kill_broker,
    restart_broker,
    run_kafka_tool,
    start_kafka,
)
from streamproc.kafka.topics import TopicSpec, ensure_topics, topic_specs, topic_status

if TYPE_CHECKING:
    from tests.integration.conftest import KafkaCluster, SettingsFactory

pytestmark = pytest.mark.integration

RDKAFKA_LOG = logging.getLogger("tests.rdkafka")


def _consume(settings: Settings, topic: str, group: str, count: int) -> list[bytes]:
    consumer = Consumer(
        client_config(
            settings,
            **{"group.id": group, "auto.offset.reset": "earliest", "logger": RDKAFKA_LOG},
        )
    )
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 120
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            values.append(message.value() or b"")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


def _produce(settings: Settings, topic: str, values: list[bytes], **extra: object) -> None:
    producer = Producer(client_config(settings, logger=RDKAFKA_LOG, **extra))
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for i, value in enumerate(values):
        producer.produce(topic, key=str(i).encode(), value=value, on_delivery=on_delivery)
    assert producer.flush(90) == 0, "records still unsent after 90 s"
    assert errors == []


def test_broker_answers(make_settings: SettingsFactory) -> None:
    assert wait_for_broker(make_settings(), timeout=10) >= 1


def test_ensure_topics_creates_six_topics_once(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    specs = topic_specs(settings)
    names = [s.name for s in specs]
    assert all(name.startswith(make_settings.prefix + "-") for name in names)

    assert ensure_topics(settings) == [(name, "created") for name in names]
    assert ensure_topics(settings) == [(name, "exists") for name in names]

    found = {s.spec.role: s for s in topic_status(settings)}
    assert all(s.exists for s in found.values())
    assert found["input"].partitions == settings.partitions
    assert found["snapshots"].partitions == 1

    admin = AdminClient(client_config(settings))
    resources = [ConfigResource("topic", settings.topic_snapshots)]
    [future] = admin.describe_configs(resources).values()
    assert future.result()["cleanup.policy"].value == "compact"
    resources = [ConfigResource("topic", settings.topic_dlq)]
    [future] = admin.describe_configs(resources).values()
    assert future.result()["retention.ms"].value == str(settings.dlq_retention_ms)


def test_cli_topics_create_and_list(
    make_settings: SettingsFactory, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("STREAMPROC_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    for role, name in settings.topics.items():
        monkeypatch.setenv(f"STREAMPROC_TOPIC_{role.upper()}", name)

    created = cli.invoke(root, ["topics", "create", "--partitions", "2"])
    assert created.exit_code == 0, created.output
    assert f"{settings.topic_input}: created (2 partitions, replication factor 1)" in (
        created.stdout
    )
    again = cli.invoke(root, ["topics", "create"])
    assert again.exit_code == 0, again.output
    assert f"{settings.topic_dlq}: already exists (2 partitions" in again.stdout

    listed = cli.invoke(root, ["topics", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"{settings.topic_snapshots}: exists (1 partitions, RF 1)" in listed.stdout
    assert "cleanup.policy=compact" in listed.stdout


def test_cli_kafka_status(kafka: KafkaCluster, cli: CliRunner, tmp_path: Path) -> None:
    data_dir = kafka.data_dir or tmp_path  # an external cluster has no launcher data dir
    result = cli.invoke(root, ["kafka", "status", "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    if kafka.external:
        assert status["state"] == "stopped"
        return
    assert status["state"] == "running"
    assert status["bootstrap_servers"] == kafka.bootstrap_servers
    assert status["brokers_answering"] == 1
    assert [n["alive"] for n in status["nodes"]] == [True]

    text = cli.invoke(root, ["kafka", "status", "--data-dir", str(data_dir)])
    assert text.exit_code == 0, text.output
    assert "running" in text.stdout
    assert text.stdout.splitlines()[-1] == f"bootstrap servers: {kafka.bootstrap_servers}"


def test_cli_kafka_start_again_reports_the_running_cluster(
    kafka: KafkaCluster, cli: CliRunner, tmp_path: Path
) -> None:
    if kafka.info is None:  # an external cluster: a start on one of our own taken ports
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            args = ["--port", str(port), "--data-dir", str(tmp_path)]
            result = cli.invoke(root, ["kafka", "start", *args])
        assert isinstance(result.exception, LauncherError)
        return
    port = kafka.info.nodes[0].client_port
    args = ["--port", str(port), "--data-dir", str(kafka.data_dir)]
    result = cli.invoke(root, ["kafka", "start", *args])
    assert result.exit_code == 0, result.output
    assert "already running" in result.stdout
    assert str(kafka.info.log_files[0]) in result.stdout
    assert result.stdout.splitlines()[-1] == f"bootstrap servers: {kafka.bootstrap_servers}"


def test_run_kafka_tool_lists_consumer_groups(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    spec = TopicSpec(settings.topic_input, 1, 1)
    ensure_topics(settings, [spec])
    _produce(settings, spec.name, [b"one"])
    group = f"{make_settings.prefix}-group"
    assert _consume(settings, spec.name, group, 1) == [b"one"]

    listed = run_kafka_tool(
        settings,
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        ["--bootstrap-server", settings.bootstrap_servers, "--list"],
    )
    assert listed.returncode == 0, listed.stderr
    assert group in listed.stdout.split()


def test_second_cluster_on_a_taken_port_fails_clearly(
    kafka: KafkaCluster, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    if kafka.info is not None:
        taken = kafka.info.nodes[0].client_port
        with pytest.raises(LauncherError, match=rf"port {taken} on 127\.0\.0\.1 is already in use"):
            start_kafka(settings, port=taken, data_dir=tmp_path / "second")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LauncherError) as info:
            start_kafka(settings, port=port, data_dir=tmp_path / "third")
    assert f"port {port} on 127.0.0.1 is already in use" in str(info.value)
    assert "--port" in str(info.value)
    assert "streamproc kafka stop" in str(info.value)
    assert kafka_status(tmp_path / "second").state == "stopped"
    assert kafka_status(tmp_path / "third").state == "stopped"


def test_three_brokers_keep_acks_all_writes_when_the_leader_dies(
    kafka3: KafkaCluster, make_settings: SettingsFactory
) -> None:
    assert kafka3.data_dir is not None
    settings = make_settings(bootstrap_servers=kafka3.bootstrap_servers, replication_factor=3)
    assert wait_for_broker(settings, timeout=30, min_brokers=3) == 3
    spec = {s.role: s for s in topic_specs(settings)}["input"]
    assert spec.config["min.insync.replicas"] == "2"
    assert ensure_topics(settings, [spec]) == [(spec.name, "created")]

    admin = AdminClient(client_config(settings))
    # Any broker may answer; wait until the new topic's metadata has reached the one that does.
    deadline = time.monotonic() + 30
    while True:
        topic = admin.list_topics(spec.name, timeout=10).topics.get(spec.name)
        partitions = topic.partitions if topic is not None else {}
        if len(partitions) == spec.partitions and all(p.leader >= 0 for p in partitions.values()):
            break
        assert time.monotonic() < deadline, f"metadata of {spec.name} incomplete: {partitions}"
        time.sleep(0.2)
    assert all(len(p.replicas) == 3 for p in partitions.values())
    leader = partitions[0].leader

    kill_broker(kafka3.data_dir, leader, signal.SIGKILL)
    try:
        status = kafka_status(kafka3.data_dir)
        assert status.state == "degraded", status.as_dict()
        assert status.alive[leader] is False
        values = [f"v{i}".encode() for i in range(50)]
        _produce(settings, spec.name, values, acks="all")
    finally:
        restart_broker(kafka3.data_dir, leader, timeout=120)
    status = kafka_status(kafka3.data_dir)
    assert status.state == "running", status.as_dict()
    assert wait_for_broker(settings, timeout=60, min_brokers=3) == 3
    read = _consume(settings, spec.name, f"{make_settings.prefix}-g", len(values))
    assert sorted(read) == sorted(values), f"read {len(read)} of {len(values)} records"
