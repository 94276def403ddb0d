"""The launcher's secured mode without a broker: properties, secret files, ACL rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamproc.config import Settings, load_settings
from streamproc.errors import LauncherError
from streamproc.kafka.acls import acl_bindings, pipeline_acl_rules
from streamproc.kafka.clusterstate import (
    ClusterInfo,
    ClusterStatus,
    load_cluster_id,
    recorded_security,
)
from streamproc.kafka.launcher import node_layout, render_server_properties, stop_kafka
from streamproc.kafka.localsecurity import (
    BrokerSecurity,
    LocalSecrets,
    admin_client_config,
    admin_settings,
    format_scram_args,
    prepare_security,
    write_client_files,
)
from streamproc.kafka.processes import _argfile_quote, probe_config
from streamproc.kafka.secretfiles import read_env_file, write_private


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> BrokerSecurity:
    data_dir = tmp_path_factory.mktemp("secured")
    security = prepare_security(data_dir)
    write_client_files(security, "127.0.0.1:19092")
    return security


def _secrets(security: BrokerSecurity) -> list[str]:
    s = security.secrets
    return [
        s.admin_password.get_secret_value(),
        s.controller_password.get_secret_value(),
        s.keystore_password.get_secret_value(),
    ]


def test_secured_node_listens_sasl_ssl_and_enforces_acls(secured: BrokerSecurity) -> None:
    nodes = node_layout(3, 19092)
    props = _props(render_server_properties(nodes[1], nodes, secured.data_dir / "n2", secured))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19093,CONTROLLER://127.0.0.1:19096"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19093"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == (
        "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"
    )
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"
    assert props["ssl.keystore.location"] == str(secured.certificates.keystore_file)
    assert props["ssl.truststore.type"] == "PEM"
    admin, controller, keystore = _secrets(secured)
    assert (
        f'username="admin" password="{admin}"'
        in (props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"])
    )
    assert (
        f'user_controller="{controller}"'
        in (props["listener.name.controller.plain.sasl.jaas.config"])
    )
    assert props["ssl.keystore.password"] == keystore


def test_plaintext_node_has_no_security_lines(tmp_path: Path) -> None:
    nodes = node_layout(1, 19092)
    props = _props(render_server_properties(nodes[0], nodes, tmp_path))
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert not [k for k in props if "sasl" in k or "ssl" in k or "authorizer" in k]


def test_secrets_are_made_once_and_kept_owner_only(secured: BrokerSecurity) -> None:
    security_dir = secured.data_dir / "security"
    again = LocalSecrets.load_or_create(security_dir)
    assert again == secured.secrets
    assert prepare_security(secured.data_dir).certificates == secured.certificates
    for path in (security_dir / "secrets.json", secured.certificates.keystore_file):
        assert path.stat().st_mode & 0o777 == 0o600
    assert security_dir.stat().st_mode & 0o777 == 0o700
    assert not [s for s in _secrets(secured) if s in repr(secured)]


def test_client_files_hold_the_admin_settings(secured: BrokerSecurity) -> None:
    env = read_env_file(secured.data_dir / "client.env")
    admin = _secrets(secured)[0]
    assert env == {
        "STREAMPROC_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
        "STREAMPROC_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMPROC_SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAMPROC_SASL_USERNAME": "admin",
        "STREAMPROC_SASL_PASSWORD": admin,
        "STREAMPROC_SSL_CAFILE": str(secured.ca_file),
    }
    props = _props((secured.data_dir / "client.properties").read_text())
    assert props["security.protocol"] == "SASL_SSL"
    assert f'password="{admin}"' in props["sasl.jaas.config"]
    for name in ("client.env", "client.properties"):
        assert (secured.data_dir / name).stat().st_mode & 0o777 == 0o600
    # The settings they describe pass the settings check.
    settings = admin_settings(secured.data_dir, load_settings())
    assert settings.sasl_username == "admin" and settings.ssl_cafile == secured.ca_file
    assert admin_client_config(secured.data_dir)["sasl.password"] == admin


def test_probe_uses_the_admin_of_a_secured_cluster(secured: BrokerSecurity) -> None:
    info = ClusterInfo.from_dict(
        {
            "data_dir": str(secured.data_dir),
            "bootstrap_servers": "127.0.0.1:19092",
            "cluster_id": "x",
            "kafka_version": "4.0.0",
            "started_at": "now",
            "java": "java",
            "libs_dir": "/libs",
            "heap": [],
            "nodes": [],
            "security": "sasl_ssl",
        }
    )
    config = probe_config(info)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.username"] == "admin"
    assert "security" in info.as_dict() and not [
        s for s in _secrets(secured) if s in json.dumps(info.as_dict())
    ]
    status = ClusterStatus(secured.data_dir, info, {}, None)
    assert status.as_dict()["security_protocol"] == "SASL_SSL"


def test_scram_credentials_are_formatted_for_admin(secured: BrokerSecurity) -> None:
    admin = _secrets(secured)[0]
    assert format_scram_args(secured) == [
        "--add-scram",
        f"SCRAM-SHA-512=[name=admin,password={admin}]",
        "--add-scram",
        f"SCRAM-SHA-256=[name=admin,password={admin}]",
    ]
    assert _argfile_quote("SCRAM-SHA-512=[name=a,password=b]") == (
        "SCRAM-SHA-512=[name=a,password=b]"
    )
    assert _argfile_quote("/a b/c") == '"/a b/c"'


def test_a_data_dir_keeps_its_security_mode(tmp_path: Path) -> None:
    assert recorded_security(tmp_path) is None
    cluster_id = load_cluster_id(tmp_path, 1, "sasl_ssl")
    assert recorded_security(tmp_path) == "sasl_ssl"
    assert load_cluster_id(tmp_path, 1, "sasl_ssl") == cluster_id
    with pytest.raises(LauncherError, match=r"holds a sasl_ssl cluster, but --security plaintext"):
        load_cluster_id(tmp_path, 1, "plaintext")


def test_an_old_cluster_file_means_plaintext(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text(json.dumps({"cluster_id": "abc", "brokers": 1}))
    assert recorded_security(tmp_path) == "plaintext"
    assert load_cluster_id(tmp_path, 1) == "abc"


def test_wipe_removes_the_secrets(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    security = prepare_security(data_dir)
    load_cluster_id(data_dir, 1, "sasl_ssl")
    write_client_files(security, "127.0.0.1:1")
    (data_dir / "users").mkdir()
    write_private(data_dir / "users" / "app.env", "x")
    stop_kafka(data_dir, wipe=True)
    assert not data_dir.exists()


def test_write_private_replaces_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o600


def test_pipeline_acls_cover_topics_groups_and_faust_topics() -> None:
    settings: Settings = load_settings(app_id="t1-streamproc", topic_input="t1-viewing-events")
    rules = {(r.resource, r.name, r.pattern): r.operations for r in pipeline_acl_rules(settings)}
    assert rules[("topic", "t1-viewing-events", "literal")] == (
        "READ",
        "WRITE",
        "CREATE",
        "DESCRIBE",
        "DESCRIBE_CONFIGS",
    )
    assert ("topic", "predictions", "literal") in rules
    assert rules[("topic", "t1-streamproc-", "prefixed")] == ("READ", "WRITE", "CREATE", "DESCRIBE")
    assert rules[("group", "t1-streamproc", "prefixed")] == ("READ", "DESCRIBE")
    assert rules[("group", "streamproc-", "prefixed")] == ("READ", "DESCRIBE")
    assert rules[("cluster", "kafka-cluster", "literal")] == ("IDEMPOTENT_WRITE",)
    assert not [r for r in rules if r[0] == "topic" and r[2] == "prefixed" and r[1] == ""]
    bindings = acl_bindings("User:app", pipeline_acl_rules(settings))
    assert len(bindings) == sum(len(ops) for ops in rules.values())
    assert {b.principal for b in bindings} == {"User:app"} and {b.host for b in bindings} == {"*"}
