"""Certificates of the local secured Kafka: a private CA and one broker certificate.

``streamproc kafka start --security sasl_ssl`` calls :func:`ensure_certificates` once per data
dir (again only when the broker certificate is about to expire). It writes:

- ``ca.pem``: the CA certificate, public; clients verify the broker with it
  (``STREAMPROC_SSL_CAFILE``) and the brokers verify each other with it;
- ``broker.p12``: the broker's key and certificate chain, a PKCS#12 keystore encrypted with
  the keystore password (file mode 0600).

The CA's private key is used to sign the broker certificate and then dropped, so nobody can
mint further certificates the clients would trust. The broker certificate names
``localhost`` and ``127.0.0.1``, the addresses the launcher's brokers listen on.

The ``cryptography`` library does the work: no ``openssl`` binary, and no JVM start per step
as ``keytool`` would need.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streamproc.kafka.secretfiles import write_private

__all__ = [
    "BROKER_HOSTS",
    "CertificateFiles",
    "ensure_certificates",
    "issue_certificates",
]

BROKER_HOSTS = ("localhost", "127.0.0.1")
CA_VALIDITY = dt.timedelta(days=5 * 365)
BROKER_VALIDITY = dt.timedelta(days=2 * 365)
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where the certificates of a local secured cluster are, and until when they hold."""

    ca_file: Path
    keystore_file: Path
    not_after: dt.datetime


def ensure_certificates(
    directory: Path, keystore_password: str, *, hosts: tuple[str, ...] = BROKER_HOSTS
) -> CertificateFiles:
    """The certificates in ``directory``: the existing ones, or new ones if missing or expiring.

    Parameters
    ----------
    directory
        Holds ``ca.pem`` and ``broker.p12``; created (mode 0700) if missing.
    keystore_password
        Encrypts ``broker.p12``; the broker's ``ssl.keystore.password``.
    hosts
        DNS names and IP addresses the broker certificate is valid for.
    """
    ca_file, keystore_file = directory / "ca.pem", directory / "broker.p12"
    if ca_file.is_file() and keystore_file.is_file():
        not_after = _keystore_not_after(keystore_file, keystore_password)
        if not_after is not None and not_after - _now() > RENEW_BEFORE:
            return CertificateFiles(ca_file, keystore_file, not_after)
    return issue_certificates(directory, keystore_password, hosts=hosts)


def issue_certificates(
    directory: Path, keystore_password: str, *, hosts: tuple[str, ...] = BROKER_HOSTS
) -> CertificateFiles:
    """Create a new CA and a broker certificate signed by it (replacing any old ones)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "streamproc"),
            x509.NameAttribute(NameOID.COMMON_NAME, "streamproc local Kafka CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    broker_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "streamproc"),
                    x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + BROKER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            # clientAuth too: a broker is the TLS client of the others (inter-broker traffic).
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(broker_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    # PBES2 with AES-256 and a SHA-256 MAC: what Java 17's PKCS12 keystore reads and writes.
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(10_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(keystore_password.encode())
    )
    keystore = pkcs12.serialize_key_and_certificates(
        b"broker", broker_key, broker_cert, [ca_cert], encryption
    )
    ca_file, keystore_file = directory / "ca.pem", directory / "broker.p12"
    write_private(keystore_file, keystore)
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_file.chmod(0o644)
    return CertificateFiles(ca_file, keystore_file, broker_cert.not_valid_after_utc)


def _keystore_not_after(path: Path, password: str) -> dt.datetime | None:
    try:
        _, cert, _ = pkcs12.load_key_and_certificates(path.read_bytes(), password.encode())
    except (OSError, ValueError):
        return None  # unreadable or another password: issue new certificates
    return cert.not_valid_after_utc if cert is not None else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
