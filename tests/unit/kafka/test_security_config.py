"""TLS/SASL settings without a broker: validation, client properties, SSL contexts, secrets."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from pydantic import SecretStr

from agents.credentials import broker_credentials
from streamproc.cli import root
from streamproc.config import Settings, load_settings, settings_markdown
from streamproc.errors import ConfigError
from streamproc.kafka.certs import BROKER_HOSTS, ensure_certificates, issue_certificates
from streamproc.kafka.clients import client_config
from streamproc.kafka.security import describe_security, redact, security_config, ssl_context

PASSWORD = "pa55-" + "x" * 12
KEY_SECRET = "snapshot-secret-0123456789"


@pytest.fixture(autouse=True)
def _no_developer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STREAMPROC_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    issue_certificates(directory, "keystore-pw")
    return directory


def _sasl(**extra: Any) -> Settings:
    values: dict[str, Any] = {
        "security_protocol": "SASL_SSL",
        "sasl_username": "app",
        "sasl_password": PASSWORD,
    }
    values.update(extra)
    return load_settings(**values)


# --- validation -------------------------------------------------------------------------------


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = load_settings()
    assert settings.security_protocol == "PLAINTEXT"
    assert security_config(settings) == {}
    assert ssl_context(settings) is None and broker_credentials(settings) is None


def test_protocol_and_mechanism_are_case_insensitive() -> None:
    settings = _sasl(security_protocol="sasl_ssl", sasl_mechanism="scram-sha-256")
    assert (settings.security_protocol, settings.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"security_protocol": "SASL_SSL"},
            "STREAMPROC_SECURITY_PROTOCOL=SASL_SSL needs STREAMPROC_SASL_USERNAME and "
            "STREAMPROC_SASL_PASSWORD; STREAMPROC_SASL_USERNAME and STREAMPROC_SASL_PASSWORD "
            "are not set",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "app"},
            "STREAMPROC_SASL_PASSWORD is not set",
        ),
        (
            {"sasl_username": "app", "sasl_password": PASSWORD},
            "STREAMPROC_SASL_USERNAME and STREAMPROC_SASL_PASSWORD are set, but "
            "STREAMPROC_SECURITY_PROTOCOL=PLAINTEXT does not use SASL",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "ssl_cafile": "/etc/hostname",
                "sasl_username": "app",
                "sasl_password": PASSWORD,
            },
            "STREAMPROC_SSL_CAFILE is set, but STREAMPROC_SECURITY_PROTOCOL=SASL_PLAINTEXT "
            "does not use TLS",
        ),
        (
            {"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"},
            "STREAMPROC_SSL_CAFILE: no such file: /no/such/ca.pem",
        ),
        (
            {"security_protocol": "SSL", "ssl_certfile": "/etc/hostname"},
            "STREAMPROC_SSL_CERTFILE is set but STREAMPROC_SSL_KEYFILE is not",
        ),
        (
            {"security_protocol": "SSL", "ssl_key_password": PASSWORD},
            "STREAMPROC_SSL_KEY_PASSWORD is set but STREAMPROC_SSL_KEYFILE is not",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
            "STREAMPROC_SASL_MECHANISM: Input should be 'SCRAM-SHA-512', 'SCRAM-SHA-256' or "
            "'PLAIN' (got 'GSSAPI')",
        ),
    ],
)
def test_bad_combinations_are_named_without_secrets(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**values)
    text = str(info.value)
    assert message in text
    assert PASSWORD not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_bad_secret_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(sasl_password=["not", "a", PASSWORD])
    text = str(info.value)
    assert "STREAMPROC_SASL_PASSWORD: " in text and "value not shown" in text
    assert PASSWORD not in text


def test_env_vars_configure_security(monkeypatch: pytest.MonkeyPatch, certs: Path) -> None:
    monkeypatch.setenv("STREAMPROC_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMPROC_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("STREAMPROC_SASL_USERNAME", "app")
    monkeypatch.setenv("STREAMPROC_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("STREAMPROC_SSL_CAFILE", str(certs / "ca.pem"))
    monkeypatch.setenv("STREAMPROC_SSL_CHECK_HOSTNAME", "false")
    settings = load_settings()
    assert settings.sasl_password == SecretStr(PASSWORD)
    assert settings.ssl_check_hostname is False
    assert describe_security(settings) == "SASL_SSL (PLAIN as user 'app')"


# --- secrets: repr, str, to_env, the README table, redaction ----------------------------------


def test_secrets_stay_out_of_repr_and_str_but_reach_child_processes(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _sasl(
        ssl_cafile=certs / "ca.pem",
        snapshot_keys=f"k1:{KEY_SECRET}",
    )
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert PASSWORD not in text and KEY_SECRET not in text
    env = settings.to_env()
    assert env["STREAMPROC_SASL_PASSWORD"] == PASSWORD
    assert env["STREAMPROC_SNAPSHOT_KEYS"] == f"k1:{KEY_SECRET}"
    assert env["STREAMPROC_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["STREAMPROC_SSL_CAFILE"] == str(certs / "ca.pem")
    # A child process given to_env() reads the same settings, the combination check included.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == settings


def test_readme_table_marks_every_secret() -> None:
    table = settings_markdown()
    for var in ("SASL_PASSWORD", "SSL_KEY_PASSWORD", "SNAPSHOT_KEYS"):
        assert f"| `STREAMPROC_{var}` | unset (secret) |" in table


def test_redact_replaces_every_secret() -> None:
    settings = _sasl(snapshot_keys=f"k1:{KEY_SECRET},k0:another-secret")
    text = redact(f"x {PASSWORD} y {KEY_SECRET} z another-secret", settings)
    assert text == "x *** y *** z ***"


def test_help_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPROC_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("STREAMPROC_SNAPSHOT_KEYS", f"k1:{KEY_SECRET}")
    for args in (["--help"], ["worker", "--help"], ["kafka", "add-user", "--help"]):
        result = CliRunner().invoke(root, args)
        assert result.exit_code == 0
        assert PASSWORD not in result.output and KEY_SECRET not in result.output


# --- librdkafka properties --------------------------------------------------------------------


def test_sasl_ssl_maps_to_librdkafka_properties(certs: Path) -> None:
    settings = _sasl(sasl_mechanism="SCRAM-SHA-256", ssl_cafile=certs / "ca.pem")
    assert client_config(settings, **{"group.id": "g"}) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "streamproc",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "app",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(certs / "ca.pem"),
        "ssl.endpoint.identification.algorithm": "https",
        "group.id": "g",
    }


def test_ssl_with_client_certificate_maps_to_librdkafka_properties(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    settings = load_settings(
        security_protocol="SSL",
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_key_password=PASSWORD,
        ssl_check_hostname=False,
    )
    assert security_config(settings) == {
        "security.protocol": "SSL",
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.key.password": PASSWORD,
        "ssl.endpoint.identification.algorithm": "none",
    }


def test_sasl_plaintext_sets_no_tls_property() -> None:
    settings = load_settings(
        security_protocol="SASL_PLAINTEXT", sasl_username="app", sasl_password=PASSWORD
    )
    assert not [k for k in security_config(settings) if k.startswith("ssl.")]


# --- the workers' SSLContext and Faust credentials -------------------------------------------


def test_ssl_context_verifies_with_the_ca_and_checks_host_names(certs: Path) -> None:
    settings = _sasl(ssl_cafile=certs / "ca.pem")
    context = ssl_context(settings)
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    [ca] = context.get_ca_certs()
    assert "streamproc local Kafka CA" in str(ca["subject"])
    relaxed = ssl_context(settings.model_copy(update={"ssl_check_hostname": False}))
    assert relaxed is not None and not relaxed.check_hostname
    assert relaxed.verify_mode == ssl.CERT_REQUIRED  # the certificate is still verified


def test_ssl_context_errors_name_the_setting_not_the_password(tmp_path: Path) -> None:
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"STREAMPROC_SSL_CAFILE: cannot load CA certificates"):
        ssl_context(load_settings(security_protocol="SSL", ssl_cafile=bad_ca))
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("x")
    key.write_text("y")
    with pytest.raises(ConfigError) as info:
        ssl_context(
            load_settings(
                security_protocol="SSL",
                ssl_certfile=cert,
                ssl_keyfile=key,
                ssl_key_password=PASSWORD,
            )
        )
    assert "cannot load the client certificate" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_faust_credentials_follow_the_protocol(certs: Path) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    sasl_ssl = broker_credentials(_sasl(ssl_cafile=certs / "ca.pem"))
    assert isinstance(sasl_ssl, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(sasl_ssl)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("app", PASSWORD)
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert PASSWORD not in repr(sasl_ssl)

    plain = credentials_to_aiokafka_auth(
        broker_credentials(
            load_settings(
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN",
                sasl_username="app",
                sasl_password=PASSWORD,
            )
        )
    )
    assert (plain["security_protocol"], plain["sasl_mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    assert plain["ssl_context"] is None

    tls = broker_credentials(load_settings(security_protocol="SSL", ssl_cafile=certs / "ca.pem"))
    assert isinstance(tls, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(tls)["security_protocol"] == "SSL"


def test_create_app_passes_the_credentials_to_faust(certs: Path) -> None:
    from agents.app import create_app

    settings = _sasl(ssl_cafile=certs / "ca.pem", snapshot_keys=f"k1:{KEY_SECRET}")
    app = create_app(settings)
    import faust

    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is not None


# --- the local CA -----------------------------------------------------------------------------


def test_certificates_name_the_local_hosts(certs: Path) -> None:
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    _, broker, chain = pkcs12.load_key_and_certificates(
        (certs / "broker.p12").read_bytes(), b"keystore-pw"
    )
    assert broker is not None and [c.subject for c in chain] == [ca.subject]
    broker.verify_directly_issued_by(ca)
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [str(n.value) for n in san]
    assert names == list(BROKER_HOSTS)
    assert (certs / "broker.p12").stat().st_mode & 0o777 == 0o600
    assert (certs.stat().st_mode & 0o777) == 0o700


def test_certificates_are_kept_while_valid(tmp_path: Path) -> None:
    made = ensure_certificates(tmp_path / "c", "pw")
    before = made.ca_file.read_bytes()
    # A second call keeps them (clients keep trusting the same CA) ...
    assert ensure_certificates(tmp_path / "c", "pw") == made
    assert made.ca_file.read_bytes() == before
    # ... and a keystore it cannot open is replaced.
    assert ensure_certificates(tmp_path / "c", "another").ca_file.read_bytes() != before
