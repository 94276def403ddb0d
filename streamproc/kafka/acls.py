"""Users and ACLs: SCRAM credentials and the permissions the pipeline needs.

:func:`pipeline_acl_rules` lists what a user running streamproc (workers and CLI) must be
allowed on a cluster that enforces ACLs; :func:`create_scram_user` and :func:`grant_acls` set
them up through the Admin API, connected as an administrator (any cluster; for the local
secured one, ``streamproc kafka add-user`` does both).

The rules, for the topics and app id of the settings::

    topic  <each of the six topics>     literal    read, write, create, describe, describe_configs
    topic  <app_id>-                    prefixed   read, write, create, describe
    group  <app_id>                     prefixed   read, describe
    group  streamproc-                  prefixed   read, describe
    cluster                                        idempotent_write

Faust keeps its own topics under ``<app_id>-`` (the partition assignor's leader topic, table
changelogs); the worker's consumer group is the app id, and the CLI's own groups start with
``streamproc-`` (``consume``, ``replay``, model control and restore). ``idempotent_write``
is needed by brokers before Kafka 3.0 for idempotent producers; later ones only ask for
``write`` on the topic. Nothing is granted on transactional ids: streamproc does not use
transactions.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaError as _RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from streamproc.config import Settings
from streamproc.errors import AuthorizationError, KafkaError
from streamproc.kafka.clients import client_config, quiet_client_logger, wait_for_broker

__all__ = [
    "SCRAM_MECHANISMS",
    "TOOL_GROUP_PREFIX",
    "AclRule",
    "acl_bindings",
    "create_scram_user",
    "grant_acls",
    "pipeline_acl_rules",
]

SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
TOOL_GROUP_PREFIX = "streamproc-"
# Kafka's minimum for SCRAM-SHA-512 is 4096 iterations; twice that costs a few ms per login.
SCRAM_ITERATIONS = 8192

Resource = Literal["topic", "group", "cluster"]
Pattern = Literal["literal", "prefixed"]

_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,
}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


@dataclass(frozen=True, slots=True)
class AclRule:
    """Operations allowed on a resource name (or name prefix)."""

    resource: Resource
    name: str
    pattern: Pattern
    operations: tuple[str, ...]

    def __str__(self) -> str:
        where = "cluster" if self.resource == "cluster" else f"{self.resource} {self.name!r}"
        if self.pattern == "prefixed":
            where += " (prefix)"
        return f"{where}: {', '.join(op.lower() for op in self.operations)}"


def pipeline_acl_rules(settings: Settings) -> list[AclRule]:
    """The ACLs a streamproc user needs for the topics and app id of ``settings``.

    Examples
    --------
    >>> from streamproc.config import Settings
    >>> for rule in pipeline_acl_rules(Settings())[-3:]:
    ...     print(rule)
    topic 'streamproc-' (prefix): read, write, create, describe
    group 'streamproc' (prefix): read, describe
    cluster: idempotent_write
    >>> len(pipeline_acl_rules(Settings(app_id="shop")))  # + the streamproc- tool groups
    10
    """
    topic_ops = ("READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS")
    rules = [
        AclRule("topic", name, "literal", topic_ops)
        for name in dict.fromkeys(settings.topics.values())
    ]
    rules.append(
        AclRule("topic", f"{settings.app_id}-", "prefixed", ("READ", "WRITE", "CREATE", "DESCRIBE"))
    )
    group_ops = ("READ", "DESCRIBE")
    rules.append(AclRule("group", settings.app_id, "prefixed", group_ops))
    if not TOOL_GROUP_PREFIX.startswith(settings.app_id):
        rules.append(AclRule("group", TOOL_GROUP_PREFIX, "prefixed", group_ops))
    rules.append(AclRule("cluster", "kafka-cluster", "literal", ("IDEMPOTENT_WRITE",)))
    return rules


def acl_bindings(principal: str, rules: Sequence[AclRule]) -> list[AclBinding]:
    """The Admin API bindings that allow ``principal`` (``User:NAME``) ``rules`` from any host."""
    return [
        AclBinding(
            _RESOURCE[rule.resource],
            rule.name,
            _PATTERN[rule.pattern],
            principal,
            "*",
            AclOperation[op],
            AclPermissionType.ALLOW,
        )
        for rule in rules
        for op in rule.operations
    ]


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings, logger=quiet_client_logger()))


def create_scram_user(
    admin_settings: Settings,
    username: str,
    password: SecretStr,
    *,
    mechanisms: Sequence[str] = SCRAM_MECHANISMS,
    timeout: float = 30.0,
) -> None:
    """Create ``username`` (or set a new password) with SCRAM credentials for ``mechanisms``.

    Parameters
    ----------
    admin_settings
        A connection allowed to alter SCRAM credentials (a super user, or ``alter`` on the
        cluster).
    username, password
        The user; the password is sent to the broker only, which keeps a salted hash.

    Raises
    ------
    AuthenticationError
        If the administrator's own login is refused.
    AuthorizationError
        If the administrator may not alter credentials.
    KafkaError
        If the broker refuses otherwise (e.g. SCRAM is not enabled).
    """
    wait_for_broker(admin_settings, timeout)
    secret = password.get_secret_value().encode()
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            username,
            ScramCredentialInfo(ScramMechanism[m.replace("-", "_")], SCRAM_ITERATIONS),
            secret,
        )
        for m in mechanisms
    ]
    admin = _admin(admin_settings)  # kept referenced until the futures resolve
    # One request per mechanism: librdkafka refuses a user twice in one request.
    for upsert, mechanism in zip(upserts, mechanisms, strict=True):
        futures = admin.alter_user_scram_credentials([upsert], request_timeout=timeout)
        for future in futures.values():
            _result(future, timeout, f"setting the {mechanism} credentials of user {username!r}")


def grant_acls(
    admin_settings: Settings, username: str, rules: Sequence[AclRule], *, timeout: float = 30.0
) -> int:
    """Allow ``username`` what ``rules`` say (existing ACLs are kept); returns the binding count.

    Raises
    ------
    AuthorizationError
        If the administrator may not create ACLs.
    KafkaError
        If the cluster has no authorizer or refuses otherwise.
    """
    wait_for_broker(admin_settings, timeout)
    bindings = acl_bindings(f"User:{username}", rules)
    admin = _admin(admin_settings)  # kept referenced until the futures resolve
    futures = admin.create_acls(bindings, request_timeout=timeout)
    for binding, future in futures.items():
        _result(future, timeout, f"creating the ACL {binding}")
    return len(bindings)


def _result(future: concurrent.futures.Future[None], timeout: float, doing: str) -> None:
    try:
        future.result(timeout=timeout + 5)
    except concurrent.futures.TimeoutError as exc:
        raise KafkaError(f"{doing} did not finish within {timeout + 5:.0f} s") from exc
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        text = error.str() if isinstance(error, _RdKafkaError) else str(exc)
        if isinstance(error, _RdKafkaError) and error.code() in (
            _RdKafkaError.CLUSTER_AUTHORIZATION_FAILED,
            _RdKafkaError.TOPIC_AUTHORIZATION_FAILED,
            _RdKafkaError.GROUP_AUTHORIZATION_FAILED,
        ):
            raise AuthorizationError(
                f"{doing} was refused: {text}; connect as a super user (the local secured "
                "cluster's admin is in DATA_DIR/client.env)"
            ) from exc
        raise KafkaError(f"{doing} failed: {text}") from exc
