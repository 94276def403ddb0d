"""The local launcher's secured mode: ``streamproc kafka start --security sasl_ssl``.

What a secured data dir holds, besides what every data dir holds (see
:mod:`streamproc.kafka.launcher`)::

    DATA_DIR/
      security/             0700, made once per data dir
        secrets.json        0600: the admin, controller and keystore passwords
        ca.pem              the CA certificate clients verify the brokers with
        broker.p12          0600: the broker key and certificate chain
      client.env            0600: STREAMPROC_* settings of the admin user (rewritten each start)
      client.properties     0600: the same for Kafka's Java tools (--command-config)
      users/NAME.env        0600: settings of a user added by `streamproc kafka add-user`

The brokers then serve clients on one ``SASL_SSL`` listener (SCRAM-SHA-512, SCRAM-SHA-256 and
PLAIN; TLS with the certificate of :mod:`~streamproc.kafka.certs`) and talk to each other over
it as ``admin``. The controller listener stays on the loopback address without TLS, but it
asks for a login too (SASL/PLAIN as ``controller``), so that it is no way around the ACLs.
``StandardAuthorizer`` enforces ACLs with ``allow.everyone.if.no.acl.found=false``;
``admin`` and ``controller`` are super users. ``admin``'s SCRAM credentials are written into
the metadata log when the storage is formatted (``kafka-storage format --add-scram``).

The passwords live in files of mode 0600 only: never on a command line (the format tool gets
its arguments from an argument file), in ``state.json``, in a log or in command output.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import SecretStr

from streamproc.config import Settings
from streamproc.errors import LauncherError
from streamproc.kafka.certs import CertificateFiles, ensure_certificates
from streamproc.kafka.secretfiles import read_env_file, render_env_file, write_private

__all__ = [
    "ADMIN_USER",
    "CLIENT_ENV",
    "CLIENT_PROPERTIES",
    "CONTROLLER_USER",
    "SECURITY_DIR",
    "SECURITY_MODES",
    "SERVER_MECHANISMS",
    "BrokerSecurity",
    "LocalSecrets",
    "SecurityMode",
    "admin_client_config",
    "admin_settings",
    "client_env",
    "format_scram_args",
    "prepare_security",
    "protocol_of",
    "user_env_file",
    "write_client_files",
]

SecurityMode = Literal["plaintext", "sasl_ssl"]
SECURITY_MODES: tuple[SecurityMode, ...] = get_args(SecurityMode)
ADMIN_USER = "admin"
CONTROLLER_USER = "controller"
SECURITY_DIR = "security"
SECRETS_FILE = "secrets.json"
CLIENT_ENV = "client.env"
CLIENT_PROPERTIES = "client.properties"
USERS_DIR = "users"
SERVER_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
ADMIN_MECHANISM = "SCRAM-SHA-512"

_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def protocol_of(mode: SecurityMode) -> str:
    """The Kafka security protocol of the client listener for a launcher mode."""
    return "SASL_SSL" if mode == "sasl_ssl" else "PLAINTEXT"


@dataclass(frozen=True, slots=True)
class LocalSecrets:
    """The passwords of a secured data dir; ``repr`` shows none of them."""

    admin_password: SecretStr = field(repr=False)
    controller_password: SecretStr = field(repr=False)
    keystore_password: SecretStr = field(repr=False)

    @classmethod
    def generate(cls) -> LocalSecrets:
        # token_urlsafe: letters, digits, - and _, so no quoting issue in JAAS or properties.
        return cls(
            SecretStr(secrets.token_urlsafe(24)),
            SecretStr(secrets.token_urlsafe(24)),
            SecretStr(secrets.token_urlsafe(24)),
        )

    @classmethod
    def load_or_create(cls, security_dir: Path) -> LocalSecrets:
        """The secrets of ``security_dir``, made (0600) at the first call."""
        path = security_dir / SECRETS_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                return cls(
                    SecretStr(str(data["admin_password"])),
                    SecretStr(str(data["controller_password"])),
                    SecretStr(str(data["keystore_password"])),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise LauncherError(
                    f"{path} is unreadable ({type(exc).__name__}); the secured cluster of "
                    f"{security_dir.parent} cannot start without it. Delete its data with "
                    f"`streamproc kafka stop --wipe --data-dir {security_dir.parent}` to start "
                    "afresh"
                ) from None
        security_dir.mkdir(parents=True, exist_ok=True)
        security_dir.chmod(0o700)
        made = cls.generate()
        data = {
            "admin_password": made.admin_password.get_secret_value(),
            "controller_password": made.controller_password.get_secret_value(),
            "keystore_password": made.keystore_password.get_secret_value(),
        }
        write_private(path, json.dumps(data, indent=2) + "\n")
        return made


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """Everything a secured broker's ``server.properties`` needs."""

    data_dir: Path
    secrets: LocalSecrets
    certificates: CertificateFiles

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_file

    def server_properties(self) -> list[str]:
        """The security lines of ``server.properties`` (they hold passwords: file mode 0600)."""
        admin = self.secrets.admin_password.get_secret_value()
        controller = self.secrets.controller_password.get_secret_value()
        keystore = self.secrets.keystore_password.get_secret_value()
        mechanisms = ",".join(SERVER_MECHANISMS)
        return [
            # Clients and brokers: SASL over TLS. The broker logs in to the others as admin.
            f"listener.name.sasl_ssl.sasl.enabled.mechanisms={mechanisms}",
            f"sasl.mechanism.inter.broker.protocol={ADMIN_MECHANISM}",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            f'{_SCRAM_MODULE} required username="{ADMIN_USER}" password="{admin}";',
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={_SCRAM_MODULE} required;",
            # PLAIN has no credential store in Kafka: its users are listed here (admin only).
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            f'{_PLAIN_MODULE} required user_{ADMIN_USER}="{admin}";',
            # The controller listener: no TLS (loopback), but a login (SCRAM cannot serve the
            # quorum: its credentials live in the metadata the quorum itself serves).
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.plain.sasl.jaas.config="
            f'{_PLAIN_MODULE} required username="{CONTROLLER_USER}" password="{controller}" '
            f'user_{CONTROLLER_USER}="{controller}";',
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={self.certificates.keystore_file}",
            f"ssl.keystore.password={keystore}",
            f"ssl.key.password={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.certificates.ca_file}",
            "ssl.endpoint.identification.algorithm=https",
            "ssl.client.auth=none",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{ADMIN_USER};User:{CONTROLLER_USER}",
        ]


def prepare_security(data_dir: Path) -> BrokerSecurity:
    """The secrets and certificates of a secured data dir, made on first use."""
    security_dir = data_dir / SECURITY_DIR
    local = LocalSecrets.load_or_create(security_dir)
    certificates = ensure_certificates(security_dir, local.keystore_password.get_secret_value())
    return BrokerSecurity(data_dir, local, certificates)


def format_scram_args(security: BrokerSecurity) -> list[str]:
    """``kafka-storage format`` arguments that create admin's SCRAM credentials."""
    admin = security.secrets.admin_password.get_secret_value()
    return [
        arg
        for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
        for arg in ("--add-scram", f"{mechanism}=[name={ADMIN_USER},password={admin}]")
    ]


def client_env(
    bootstrap_servers: str,
    ca_file: Path,
    username: str,
    password: SecretStr,
    mechanism: str = ADMIN_MECHANISM,
) -> dict[str, str]:
    """The ``STREAMPROC_*`` settings of a user of a local secured cluster."""
    return {
        "STREAMPROC_BOOTSTRAP_SERVERS": bootstrap_servers,
        "STREAMPROC_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMPROC_SASL_MECHANISM": mechanism,
        "STREAMPROC_SASL_USERNAME": username,
        "STREAMPROC_SASL_PASSWORD": password.get_secret_value(),
        "STREAMPROC_SSL_CAFILE": str(ca_file),
    }


def write_client_files(security: BrokerSecurity, bootstrap_servers: str) -> tuple[Path, Path]:
    """Write ``client.env`` and ``client.properties`` (0600) for the admin user.

    Returns
    -------
    (client.env, client.properties)
    """
    data_dir = security.data_dir
    env_path, props_path = data_dir / CLIENT_ENV, data_dir / CLIENT_PROPERTIES
    values = client_env(
        bootstrap_servers, security.ca_file, ADMIN_USER, security.secrets.admin_password
    )
    write_private(
        env_path,
        render_env_file(
            values,
            header=f"The admin (super user) of the local secured Kafka in {data_dir}.\n"
            f"Load with: set -a; . {env_path}; set +a\n"
            "Secret: keep this file to yourself (mode 0600).",
        ),
    )
    admin = security.secrets.admin_password.get_secret_value()
    props = [
        f"# The admin of the local secured Kafka in {data_dir}, for Kafka's tools "
        "(--command-config). Secret: mode 0600.",
        f"bootstrap.servers={bootstrap_servers}",
        "security.protocol=SASL_SSL",
        f"sasl.mechanism={ADMIN_MECHANISM}",
        f'sasl.jaas.config={_SCRAM_MODULE} required username="{ADMIN_USER}" password="{admin}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={security.ca_file}",
    ]
    write_private(props_path, "\n".join(props) + "\n")
    return env_path, props_path


def user_env_file(data_dir: Path, username: str) -> Path:
    """Where `streamproc kafka add-user` keeps the settings of ``username``."""
    return data_dir / USERS_DIR / f"{username}.env"


def _admin_env(data_dir: Path) -> dict[str, str]:
    path = data_dir / CLIENT_ENV
    try:
        return read_env_file(path)
    except OSError as exc:
        raise LauncherError(
            f"{path} is missing ({exc.strerror}); is {data_dir} the data dir of a cluster "
            "started with `streamproc kafka start --security sasl_ssl`?"
        ) from None


def admin_client_config(data_dir: Path) -> dict[str, Any]:
    """librdkafka properties with which the launcher itself talks to its secured cluster."""
    env = _admin_env(data_dir)
    return {
        "bootstrap.servers": env["STREAMPROC_BOOTSTRAP_SERVERS"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": env["STREAMPROC_SASL_MECHANISM"],
        "sasl.username": env["STREAMPROC_SASL_USERNAME"],
        "sasl.password": env["STREAMPROC_SASL_PASSWORD"],
        "ssl.ca.location": env["STREAMPROC_SSL_CAFILE"],
    }


def admin_settings(data_dir: Path, base: Settings) -> Settings:
    """``base`` with the connection and credentials of the admin of a local secured cluster.

    Every TLS/SASL setting is replaced, so stray ``STREAMPROC_SSL_*`` values of ``base`` do
    not leak into the admin's connection.
    """
    env = _admin_env(data_dir)
    return base.model_copy(
        update={
            "bootstrap_servers": env["STREAMPROC_BOOTSTRAP_SERVERS"],
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": env["STREAMPROC_SASL_MECHANISM"],
            "sasl_username": env["STREAMPROC_SASL_USERNAME"],
            "sasl_password": SecretStr(env["STREAMPROC_SASL_PASSWORD"]),
            "ssl_cafile": Path(env["STREAMPROC_SSL_CAFILE"]),
            "ssl_certfile": None,
            "ssl_keyfile": None,
            "ssl_key_password": None,
            "ssl_check_hostname": True,
        }
    )
