"""The launcher's broker-free parts: layout, generated config, ports, Java and pom parsing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from streamproc.config import Settings, load_settings
from streamproc.errors import LauncherError
from streamproc.kafka.launcher import (
    check_java,
    fetch_kafka_jars,
    find_free_ports,
    kafka_status,
    kafka_version,
    node_layout,
    parse_java_version,
    port_in_use,
    render_log4j2_properties,
    render_server_properties,
    start_kafka,
    stop_kafka,
)

REPO = Path(__file__).resolve().parents[3]


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_one_broker_layout_uses_port_and_next() -> None:
    [node] = node_layout(1, 9092)
    assert (node.node_id, node.client_port, node.controller_port) == (1, 9092, 9093)


def test_three_broker_layout_puts_controllers_after_clients() -> None:
    nodes = node_layout(3, 30000)
    assert [(n.node_id, n.client_port, n.controller_port) for n in nodes] == [
        (1, 30000, 30003),
        (2, 30001, 30004),
        (3, 30002, 30005),
    ]


@pytest.mark.parametrize("brokers", [0, 2, 4])
def test_unsupported_broker_count_is_refused(brokers: int) -> None:
    with pytest.raises(LauncherError, match=f"1 or 3 brokers, got brokers={brokers}"):
        node_layout(brokers, 9092)


def test_ports_beyond_65535_are_refused() -> None:
    with pytest.raises(LauncherError, match="needs ports 65534-65539"):
        node_layout(3, 65534)


def test_single_broker_properties(tmp_path: Path) -> None:
    nodes = node_layout(1, 19092)
    props = _props(render_server_properties(nodes[0], nodes, tmp_path / "node-1"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "node-1" / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert "min.insync.replicas" not in props  # the cluster default (1) stays


def test_three_broker_properties_form_one_quorum(tmp_path: Path) -> None:
    nodes = node_layout(3, 19092)
    rendered = [_props(render_server_properties(n, nodes, tmp_path / n.name)) for n in nodes]
    voters = "1@127.0.0.1:19095,2@127.0.0.1:19096,3@127.0.0.1:19097"
    assert {p["controller.quorum.voters"] for p in rendered} == {voters}
    assert [p["node.id"] for p in rendered] == ["1", "2", "3"]
    assert rendered[1]["listeners"] == "PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19096"
    assert rendered[2]["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19094"
    for props in rendered:
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert "min.insync.replicas" not in props
    assert len({p["log.dirs"] for p in rendered}) == 3


def test_log4j2_config_writes_to_the_given_file(tmp_path: Path) -> None:
    text = render_log4j2_properties(tmp_path / "server.log")
    assert f"appender.file.fileName = {tmp_path / 'server.log'}" in text
    assert "rootLogger.appenderRef.file.ref = file" in text


def test_port_in_use_detects_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


def test_find_free_ports_returns_a_free_block() -> None:
    base = find_free_ports(4)
    assert 20000 <= base < 32000
    assert not any(port_in_use(base + i) for i in range(4))


def test_taken_port_fails_with_a_clear_message(settings: Settings, tmp_path: Path) -> None:
    base = find_free_ports(2)
    port = base + 1  # the controller port of a broker whose client port is base
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        with pytest.raises(LauncherError) as info:
            start_kafka(settings, port=base, data_dir=tmp_path / "kafka")
    message = str(info.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert "controller port of Kafka node 1" in message
    assert "--port" in message and "streamproc kafka stop" in message
    assert not (tmp_path / "kafka" / "state.json").exists()


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_392"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "22-ea" 2024-03-19', 22),
        ('Picked up JAVA_TOOL_OPTIONS: -Xss1m\nopenjdk version "11.0.2" 2019-01-15', 11),
    ],
)
def test_parse_java_version(text: str, major: int) -> None:
    assert parse_java_version(text) == major


def test_unparsable_java_version_names_the_output() -> None:
    with pytest.raises(LauncherError, match=r"cannot read the Java version.*got 'garbage'"):
        parse_java_version("garbage")


def _fake_java(folder: Path, version: str) -> Path:
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2020-01-01' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


def test_old_java_is_refused_with_the_version_found(tmp_path: Path) -> None:
    _fake_java(tmp_path / "jdk11", "11.0.2")
    with pytest.raises(LauncherError, match=r"Java 11 found at .*jdk11.*needs Java 17 or newer"):
        check_java({"JAVA_HOME": str(tmp_path / "jdk11"), "PATH": os.defpath})


def test_java_home_is_honoured(tmp_path: Path) -> None:
    java = _fake_java(tmp_path / "jdk21", "21.0.1")
    found = check_java({"JAVA_HOME": str(tmp_path / "jdk21")})
    assert (found.path, found.major) == (str(java), 21)


def test_missing_java_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match=r"`java` is not on PATH.*Java 17"):
        check_java({"PATH": str(tmp_path)})


def test_kafka_version_comes_from_the_pom() -> None:
    assert kafka_version() == "4.0.0"
    assert kafka_version(REPO / "kafka" / "pom.xml") == "4.0.0"


def test_pom_without_version_is_reported(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><properties/></project>')
    with pytest.raises(LauncherError, match=r"has no <kafka\.version> property"):
        kafka_version(pom)
    with pytest.raises(LauncherError, match="pom is missing"):
        kafka_version(tmp_path / "absent.xml")


def test_kafka_home_is_used_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = tmp_path / "kafka" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.0.0.jar").touch()
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)  # no mvn
    settings = load_settings(kafka_home=tmp_path / "kafka")
    assert fetch_kafka_jars(settings) == libs


def test_kafka_home_without_jars_is_reported(tmp_path: Path) -> None:
    settings = load_settings(kafka_home=tmp_path)
    with pytest.raises(LauncherError, match="has no libs/kafka_"):
        fetch_kafka_jars(settings)


def test_missing_mvn_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    settings = load_settings(kafka_cache_dir=tmp_path)
    with pytest.raises(LauncherError, match=r"`mvn` \(Apache Maven\) is not on PATH"):
        fetch_kafka_jars(settings)


def test_failing_mvn_shows_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mvn = tmp_path / "mvn"
    mvn.write_text("#!/bin/sh\necho 'Could not transfer artifact org.apache.kafka'\nexit 1\n")
    mvn.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: str(mvn))
    settings = load_settings(kafka_cache_dir=tmp_path / "cache")
    with pytest.raises(LauncherError) as info:
        fetch_kafka_jars(settings)
    message = str(info.value)
    assert "exit code 1" in message
    assert "Could not transfer artifact" in message
    assert "Maven Central" in message and "~/.m2/settings.xml" in message


def test_cached_jars_skip_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = tmp_path / "4.0.0" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("4.0.0\n")
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    assert fetch_kafka_jars(load_settings(kafka_cache_dir=tmp_path)) == libs


def test_status_and_stop_of_an_empty_data_dir(tmp_path: Path) -> None:
    found = kafka_status(tmp_path)
    assert found.state == "stopped"
    assert found.as_dict()["nodes"] == []
    assert stop_kafka(tmp_path) == []


def test_stop_never_signals_a_foreign_pid(tmp_path: Path) -> None:
    # A state file that names this very test process: not a broker of this data dir.
    data_dir = tmp_path.resolve()
    node = {
        "node_id": 1,
        "pid": os.getpid(),
        "client_port": 1,
        "controller_port": 2,
        "log_file": "l",
        "console_file": "c",
        "config_file": "s",
    }
    state = {
        "data_dir": str(data_dir),
        "bootstrap_servers": "127.0.0.1:1",
        "cluster_id": "x",
        "kafka_version": "4.0.0",
        "started_at": "now",
        "java": "java",
        "libs_dir": "/x",
        "heap": [],
        "nodes": [node],
    }
    (data_dir / "state.json").write_text(json.dumps(state))
    assert kafka_status(data_dir).state == "stopped"
    assert stop_kafka(data_dir) == []
    assert not (data_dir / "state.json").exists()
