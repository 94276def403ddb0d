"""The pipeline on a SASL_SSL broker with ACLs, and the clients it must refuse.

The module starts its own secured broker with the project's launcher
(``start_kafka(security="sasl_ssl")``): TLS with a CA made for the data dir, SCRAM-SHA-512 /
SCRAM-SHA-256 / PLAIN logins, ``StandardAuthorizer`` with no access unless an ACL allows it.
Users are made here as the admin, with the same functions `streamproc kafka add-user` uses.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from streamproc.audit import audit_ingest
from streamproc.cli import root
from streamproc.config import Settings, load_settings
from streamproc.emit.decode_any import decode_record
from streamproc.errors import AuthenticationError, AuthorizationError, KafkaError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.acls import create_scram_user, grant_acls, pipeline_acl_rules
from streamproc.kafka.certs import issue_certificates
from streamproc.kafka.clients import wait_for_broker
from streamproc.kafka.launcher import (
    ClusterInfo,
    find_free_ports,
    kafka_status,
    start_kafka,
    stop_kafka,
)
from streamproc.kafka.localsecurity import ADMIN_USER, CLIENT_ENV, LocalSecrets, admin_settings
from streamproc.kafka.read import read_to_end
from streamproc.kafka.secretfiles import read_env_file
from streamproc.kafka.topics import ensure_topics
from streamproc.learning.specs import get_model_specs
from streamproc.produce import EventProducer
from streamproc.simulate import SimParams, simulate_events
from streamproc.workers import wait_for_catch_up

if TYPE_CHECKING:
    from tests.integration.conftest import SettingsFactory

pytestmark = pytest.mark.integration

SNAPSHOT_SECRET = "s3cr3t-snapshot-key-" + secrets.token_hex(8)
SNAPSHOT_KEYS = f"test:{SNAPSHOT_SECRET}"
MODELS = [s.name for s in get_model_specs("engagement,qoe,affinity")]
TOPIC_FIELDS = [name for name in Settings.model_fields if name.startswith("topic_")]


@dataclass(frozen=True)
class SecureCluster:
    info: ClusterInfo
    ca_file: Path
    admin_password: str

    @property
    def bootstrap_servers(self) -> str:
        return self.info.bootstrap_servers


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    """One SASL_SSL broker for this module; an error (never a skip) if it cannot start."""
    settings = load_settings()  # the jar cache and KAFKA_HOME, as the session fixture uses
    data_dir = tmp_path_factory.mktemp("kafka-sasl")
    try:
        info = start_kafka(
            settings,
            brokers=1,
            port=find_free_ports(2),
            data_dir=data_dir,
            timeout=120,
            exit_with_parent=True,
            security="sasl_ssl",
        )
    except KafkaError as exc:
        stop_kafka(data_dir)
        pytest.fail(f"the SASL_SSL Kafka could not start: {type(exc).__name__}: {exc}")
    try:
        env = read_env_file(info.data_dir / CLIENT_ENV)
        yield SecureCluster(
            info, Path(env["STREAMPROC_SSL_CAFILE"]), env["STREAMPROC_SASL_PASSWORD"]
        )
    finally:
        stop_kafka(info.data_dir)


def _admin(make_settings: SettingsFactory, cluster: SecureCluster) -> Settings:
    return admin_settings(
        cluster.info.data_dir, make_settings(bootstrap_servers=cluster.bootstrap_servers)
    )


def _as_user(
    make_settings: SettingsFactory,
    cluster: SecureCluster,
    username: str,
    password: str,
    **extra: Any,
) -> Settings:
    settings: Settings = make_settings(
        bootstrap_servers=cluster.bootstrap_servers,
        security_protocol="SASL_SSL",
        sasl_username=username,
        sasl_password=password,
        ssl_cafile=cluster.ca_file,
        **extra,
    )
    return settings


def _new_user(admin: Settings, prefix: str) -> tuple[str, str]:
    username, password = f"{prefix}-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(18)
    create_scram_user(admin, username, SecretStr(password))
    return username, password


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def _secrets_in(text: str, secrets_: list[str]) -> list[str]:
    return [f"secret #{i}" for i, s in enumerate(secrets_) if s in text]


# --- the launcher's secured cluster ------------------------------------------------------------


def test_secured_launcher_files_status_and_mechanisms(
    secure_kafka: SecureCluster, make_settings: SettingsFactory, cli: CliRunner
) -> None:
    data_dir = secure_kafka.info.data_dir
    for path in (
        data_dir / CLIENT_ENV,
        data_dir / "client.properties",
        data_dir / "security" / "secrets.json",
        data_dir / "security" / "broker.p12",
        data_dir / "node-1" / "server.properties",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path
    status = kafka_status(data_dir)
    assert status.state == "running" and status.security_protocol == "SASL_SSL"
    assert status.brokers_answering == 1
    local = LocalSecrets.load_or_create(data_dir / "security")
    hidden = [
        local.admin_password.get_secret_value(),
        local.controller_password.get_secret_value(),
        local.keystore_password.get_secret_value(),
    ]
    # Secrets stay in the 0600 files: not in the state file, the broker log or status output.
    for path in (data_dir / "state.json", data_dir / "cluster.json", *secure_kafka.info.log_files):
        assert not _secrets_in(path.read_text(errors="replace"), hidden), path
    assert not _secrets_in(orjson.dumps(status.as_dict()).decode(), hidden)

    # The admin logs in with every mechanism the listener offers.
    admin = _admin(make_settings, secure_kafka)
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"):
        assert wait_for_broker(admin.model_copy(update={"sasl_mechanism": mechanism}), 20) == 1

    # The CLI: status names the protocol; add-user makes a user whose env file just works.
    result = cli.invoke(root, ["kafka", "status", "--data-dir", str(data_dir)])
    assert result.exit_code == 0 and "security: SASL_SSL" in result.output, result.output
    result = cli.invoke(root, ["kafka", "add-user", "cli-user", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    user_file = data_dir / "users" / "cli-user.env"
    assert user_file.stat().st_mode & 0o777 == 0o600
    user_env = read_env_file(user_file)
    assert user_env["STREAMPROC_SASL_PASSWORD"] not in result.output
    assert not _secrets_in(result.output, hidden)
    user = load_settings(**{k.removeprefix("STREAMPROC_").lower(): v for k, v in user_env.items()})
    assert user.sasl_username == "cli-user"
    assert wait_for_broker(user, timeout=20) == 1
    assert [outcome for _, outcome in ensure_topics(user)] == ["created"] * 6
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        assert wait_for_broker(user.model_copy(update={"sasl_mechanism": mechanism}), 20) == 1


# --- (a) the whole pipeline as an application user with ACLs -----------------------------------


def test_pipeline_runs_as_a_user_with_the_pipeline_acls(
    secure_kafka: SecureCluster,
    make_settings: SettingsFactory,
    spawn_worker: Any,
    cli: CliRunner,
) -> None:
    admin = _admin(make_settings, secure_kafka)
    username, password = _new_user(admin, "app")
    metrics_port = find_free_ports(1)
    settings = _as_user(
        make_settings,
        secure_kafka,
        username,
        password,
        agents="ingest,model",
        snapshot_keys=SNAPSHOT_KEYS,
        metrics_port=metrics_port,
        partitions=2,
    )
    assert grant_acls(admin, username, pipeline_acl_rules(settings)) > 0

    # The user creates the topics itself (CREATE on its topics) and publishes.
    assert [outcome for _, outcome in ensure_topics(settings)] == ["created"] * 6
    simulation = simulate_events(
        SimParams(n_events=3000, n_users=120, n_titles=40, seed=11, invalid_fraction=0.03),
        settings,
    )
    with EventProducer(settings) as producer:
        for record in simulation:
            producer.send_raw(record.key, record.value)
        assert producer.flush(60.0) == 0, producer.errors
    manifest = simulation.manifest

    with spawn_worker(settings, "worker") as worker:
        wait_for_catch_up(
            settings, [settings.topic_input, settings.topic_valid], timeout=150, workers=[worker]
        )
        base = f"http://127.0.0.1:{metrics_port}"
        deadline = time.monotonic() + 30
        while True:  # the metrics server samples on its own clock
            exposition = _get(f"{base}/metrics")
            if "streamproc_predictions_total{" in exposition or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        status_json = _get(f"{base}/status.json")
    assert "streamproc_predictions_total{" in exposition

    # Every input record is accounted for, and every play got one prediction per model.
    report = audit_ingest(settings)
    assert report.balanced, report.as_dict()
    assert report.input_records == manifest.counts["records"]
    schemas = load_schemas(settings.schemas_path)
    predictions = [
        decode_record(r.value or b"", schemas)[1]
        for r in read_to_end(settings, settings.topic_predictions)
    ]
    plays = {s.play_event_id for s in manifest.sessions}
    assert {(p["event_id"], p["model"]) for p in predictions} == {
        (e, m) for e in plays for m in MODELS
    }

    # `streamproc lag` works with the same credentials (env only: nothing on the command line).
    result = cli.invoke(root, ["lag", "--json"], env=settings.to_env())
    assert result.exit_code == 0, result.output
    rows = orjson.loads(result.output)
    assert {r["topic"] for r in rows} == {settings.topic_input, settings.topic_valid}
    assert all(r["lag"] == 0 for r in rows)

    # (d) no secret in the worker's log, /metrics, /status.json or the lag output.
    hidden = [password, SNAPSHOT_SECRET, secure_kafka.admin_password]
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, worker.log_tail()
    for name, text in [
        ("worker log", log),
        ("/metrics", exposition),
        ("/status.json", status_json),
        ("lag", result.output),
    ]:
        assert not _secrets_in(text, hidden), name


# --- (b) a wrong password: refused at once, and the password shown nowhere ---------------------


def test_wrong_password_is_refused_fast_and_never_shown(
    secure_kafka: SecureCluster, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    wrong = "Wr0ng-" + secrets.token_urlsafe(12)
    settings = _as_user(make_settings, secure_kafka, ADMIN_USER, wrong)
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        wait_for_broker(settings, timeout=60)
    assert time.monotonic() - started < 15  # refused, not timed out
    message = str(info.value)
    assert "refused the login over SASL_SSL (SCRAM-SHA-512 as user 'admin')" in message
    assert "invalid credentials" in message and "STREAMPROC_SASL_PASSWORD" in message
    assert wrong not in message

    # The CLI and a worker process: exit code 3 with the error, nothing printed holds it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
    env.update(settings.to_env())
    started = time.monotonic()
    lag = subprocess.run(
        [sys.executable, "-m", "streamproc", "lag", "--timeout", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lag.returncode == 3, lag.stderr
    assert "AuthenticationError: " in lag.stderr and "invalid credentials" in lag.stderr
    assert wrong not in lag.stdout + lag.stderr
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.run(
            [sys.executable, "-m", "streamproc", "worker"],
            env={**env, "STREAMPROC_SNAPSHOT_KEYS": SNAPSHOT_KEYS, "STREAMPROC_METRICS_PORT": "0"},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=90,
            check=False,
        )
    assert time.monotonic() - started < 60
    text = log_path.read_text(errors="replace")
    assert worker.returncode == 3, text
    assert "AuthenticationError: " in text and "refused the login" in text
    assert wrong not in text and SNAPSHOT_SECRET not in text

    # The wrong CA: the TLS handshake fails, with the setting to check.
    other_ca = issue_certificates(tmp_path / "other-ca", "pw").ca_file
    with pytest.raises(AuthenticationError, match=r"TLS handshake .*certificate verify failed"):
        wait_for_broker(settings.model_copy(update={"ssl_cafile": other_ca}), timeout=60)


def test_clients_without_credentials_get_no_answer(
    secure_kafka: SecureCluster, make_settings: SettingsFactory
) -> None:
    plaintext = make_settings(bootstrap_servers=secure_kafka.bootstrap_servers)
    started = time.monotonic()
    with pytest.raises(KafkaError, match="connects with PLAINTEXT"):
        wait_for_broker(plaintext, timeout=4)
    assert time.monotonic() - started < 10


# --- (c) a user without ACLs: authenticated, then refused ---------------------------------------


def test_user_without_acls_is_refused(
    secure_kafka: SecureCluster, make_settings: SettingsFactory
) -> None:
    admin = _admin(make_settings, secure_kafka)
    # The topics exist (made by the admin), so each refusal is about access, not absence.
    owner = make_settings(bootstrap_servers=secure_kafka.bootstrap_servers, partitions=1)
    names = {n: getattr(owner, n) for n in TOPIC_FIELDS}
    owned = admin.model_copy(update=names)
    ensure_topics(owned)
    with EventProducer(owned) as producer:
        producer.send_raw(b"k", b"{}")
        assert producer.flush(30.0) == 0

    username, password = _new_user(admin, "nobody")
    settings = _as_user(make_settings, secure_kafka, username, password).model_copy(update=names)
    assert wait_for_broker(settings, timeout=20) == 1  # the login itself works

    with pytest.raises(AuthorizationError, match=r"refused to SASL_SSL .*authoriz"):
        list(read_to_end(settings, settings.topic_input, timeout=20))
    with pytest.raises(AuthorizationError, match=r"creating topic .* refused .*needs ACLs"):
        ensure_topics(
            settings.model_copy(update={"topic_input": f"{settings.topic_input}-new"}),
            timeout=20,
        )
    producer = EventProducer(settings, config={"message.timeout.ms": 10_000})
    producer.send_raw(b"k", b"{}")
    assert producer.flush(30.0) == 1
    assert set(producer.errors) == {"TOPIC_AUTHORIZATION_FAILED"}, producer.errors


# --- (d) --help shows no secret -----------------------------------------------------------------


def test_help_shows_no_secret(secure_kafka: SecureCluster, cli: CliRunner) -> None:
    env = read_env_file(secure_kafka.info.data_dir / CLIENT_ENV)
    env["STREAMPROC_SNAPSHOT_KEYS"] = SNAPSHOT_KEYS
    env["STREAMPROC_SSL_KEY_PASSWORD"] = "key-" + secrets.token_hex(8)
    hidden = [env["STREAMPROC_SASL_PASSWORD"], SNAPSHOT_SECRET, env["STREAMPROC_SSL_KEY_PASSWORD"]]
    for args in (
        ["--help"],
        ["worker", "--help"],
        ["kafka", "start", "--help"],
        ["kafka", "add-user", "--help"],
        ["lag", "--help"],
        ["topics", "create", "--help"],
    ):
        result = cli.invoke(root, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        assert not _secrets_in(result.output, hidden), args
