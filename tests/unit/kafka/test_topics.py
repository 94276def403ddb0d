"""Topic declarations: one place, names and policies from the settings."""

from __future__ import annotations

import pytest

from streamproc.config import Settings, load_settings
from streamproc.errors import BrokerUnavailableError
from streamproc.kafka.clients import client_config
from streamproc.kafka.topics import ensure_topics, topic_specs


def test_six_topics_in_flow_order(settings: Settings) -> None:
    specs = topic_specs(settings)
    assert [(s.role, s.name) for s in specs] == [
        ("input", "viewing-events"),
        ("valid", "viewing-events-valid"),
        ("dlq", "viewing-events-dlq"),
        ("predictions", "predictions"),
        ("drift", "drift-signals"),
        ("snapshots", "model-snapshots"),
    ]
    assert {s.role: s.name for s in specs} == settings.topics


def test_names_partitions_and_retention_come_from_settings() -> None:
    settings = load_settings(
        topic_input="t1-in",
        topic_dlq="t1-dlq",
        partitions=3,
        retention_ms=1000,
        dlq_retention_ms=5000,
    )
    specs = {s.role: s for s in topic_specs(settings)}
    assert specs["input"].name == "t1-in"
    assert specs["input"].partitions == 3
    assert specs["input"].config == {"cleanup.policy": "delete", "retention.ms": "1000"}
    assert specs["dlq"].config["retention.ms"] == "5000"
    for role in ("input", "valid", "dlq", "predictions", "drift"):
        assert specs[role].config["cleanup.policy"] == "delete"
        assert specs[role].replication_factor == 1


def test_snapshots_are_compacted(settings: Settings) -> None:
    snapshots = {s.role: s for s in topic_specs(settings)}["snapshots"]
    assert snapshots.partitions == 1
    assert snapshots.config["cleanup.policy"] == "compact"
    assert "retention.ms" not in snapshots.config
    assert 0 < float(snapshots.config["min.cleanable.dirty.ratio"]) < 0.5
    assert int(snapshots.config["segment.ms"]) <= 3600 * 1000


def test_replication_3_requires_two_in_sync_replicas() -> None:
    specs = topic_specs(load_settings(replication_factor=3))
    assert all(s.replication_factor == 3 for s in specs)
    assert all(s.config["min.insync.replicas"] == "2" for s in specs)
    assert all("min.insync.replicas" not in s.config for s in topic_specs(load_settings()))


def test_client_config_is_shared_and_extendable() -> None:
    settings = load_settings(bootstrap_servers="kafka://h1:1,h2:2", app_id="app")
    assert client_config(settings) == {"bootstrap.servers": "h1:1,h2:2", "client.id": "app"}
    extended = client_config(settings, **{"group.id": "g", "client.id": "other"})
    assert extended["group.id"] == "g" and extended["client.id"] == "other"


def test_unreachable_broker_names_servers_and_hint() -> None:
    import socket

    with socket.socket() as sock:  # a port that refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        settings = load_settings(bootstrap_servers=f"127.0.0.1:{port}")
        with pytest.raises(BrokerUnavailableError) as info:
            ensure_topics(settings, timeout=1.0)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "streamproc kafka start" in str(info.value)
