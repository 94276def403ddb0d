"""HMAC-SHA256 signatures for model snapshots, with key rotation.

A snapshot is a pickle, and unpickling is code execution: a snapshot read from a topic is
unpickled only after its signature verifies with one of the configured keys. Keys are
configured as ``kid:secret[,kid:secret...]`` (``STREAMPROC_SNAPSHOT_KEYS``); new snapshots
are signed with the first key, and any listed key verifies. To rotate: put the new key
first, keep the old one listed until every snapshot signed with it has been replaced,
then drop it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from streamproc.errors import ConfigError, SnapshotError

__all__ = ["Signer", "parse_keys"]


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse ``kid:secret`` pairs, the signing key first.

    >>> parse_keys("k2:abcdefgh, k1:12345678")
    [('k2', b'abcdefgh'), ('k1', b'12345678')]
    """
    keys: list[tuple[str, bytes]] = []
    for i, part in enumerate(p.strip() for p in spec.split(",")):
        if not part:
            continue
        kid, sep, secret = part.partition(":")
        if not sep or not kid or len(secret) < 8:
            raise ConfigError(
                f"STREAMPROC_SNAPSHOT_KEYS entry {i + 1} must be 'key-id:secret' with a secret of "
                "at least 8 characters"
            )
        keys.append((kid, secret.encode()))
    if not keys:
        raise ConfigError("STREAMPROC_SNAPSHOT_KEYS is empty: set at least one 'key-id:secret'")
    return keys


@dataclass(frozen=True)
class Signer:
    """Sign with the first key; verify with any.

    >>> signer = Signer(parse_keys("new:0123456789,old:abcdefghij"))
    >>> sig = signer.sign(b"payload")
    >>> sig.startswith("new:")
    True
    >>> signer.verify(b"payload", sig)
    'new'
    >>> try:
    ...     signer.verify(b"tampered", sig)
    ... except SnapshotError as exc:
    ...     print(exc)
    signature does not match (key id 'new'): the snapshot was altered or signed with another key
    """

    keys: list[tuple[str, bytes]]

    def __repr__(self) -> str:  # never show secrets
        return f"Signer(key_ids={[kid for kid, _ in self.keys]})"

    def sign(self, message: bytes) -> str:
        kid, secret = self.keys[0]
        return f"{kid}:{hmac.new(secret, message, hashlib.sha256).hexdigest()}"

    def verify(self, message: bytes, signature: str) -> str:
        """Return the key id that verifies ``signature``, or raise :class:`SnapshotError`."""
        kid, sep, digest = signature.partition(":")
        # compare_digest raises TypeError for non-ASCII str: refuse such a digest here.
        if not sep or not digest or not digest.isascii():
            raise SnapshotError("snapshot is unsigned or its signature is malformed")
        for known, secret in self.keys:
            if known == kid:
                expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
                if hmac.compare_digest(expected, digest):
                    return kid
                raise SnapshotError(
                    f"signature does not match (key id {kid!r}): the snapshot was altered or "
                    "signed with another key"
                )
        raise SnapshotError(
            f"snapshot is signed with unknown key id {kid!r} (known: "
            f"{', '.join(k for k, _ in self.keys)}); add the key to STREAMPROC_SNAPSHOT_KEYS"
        )
