"""Node layout and ports of a local cluster, and the broker config files the launcher writes.

Port scheme: with ``brokers=n`` and first port ``P``, node ``i`` (1-based) serves clients on
``P + i - 1`` and the controller quorum on ``P + n + i - 1``. One broker uses ``P`` and ``P+1``
(9092 and 9093 by default); three use ``P..P+2`` for clients and ``P+3..P+5`` for the quorum.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streamproc.errors import LauncherError
from streamproc.kafka.localsecurity import BrokerSecurity

__all__ = [
    "HOST",
    "SUPPORTED_BROKER_COUNTS",
    "NodeSpec",
    "check_ports_free",
    "find_free_ports",
    "node_layout",
    "port_in_use",
    "render_log4j2_properties",
    "render_server_properties",
]

SUPPORTED_BROKER_COUNTS = (1, 3)
HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a local cluster: a combined broker and controller."""

    node_id: int
    client_port: int
    controller_port: int
    host: str = HOST

    @property
    def name(self) -> str:
        return f"node-{self.node_id}"


def node_layout(brokers: int, port: int, host: str = HOST) -> list[NodeSpec]:
    """The nodes of a ``brokers``-node cluster whose first client port is ``port``.

    Examples
    --------
    >>> [(n.node_id, n.client_port, n.controller_port) for n in node_layout(3, 9092)]
    [(1, 9092, 9095), (2, 9093, 9096), (3, 9094, 9097)]
    """
    if brokers not in SUPPORTED_BROKER_COUNTS:
        raise LauncherError(
            f"the local launcher runs 1 or 3 brokers, got brokers={brokers}; use --brokers 1 "
            "(development) or --brokers 3 (replication tests)"
        )
    last = port + 2 * brokers - 1
    if port < 1024 or last > 65535:
        raise LauncherError(
            f"a {brokers}-broker cluster needs ports {port}-{last}, expected within 1024-65535; "
            "choose another --port"
        )
    return [
        NodeSpec(node_id=i + 1, client_port=port + i, controller_port=port + brokers + i, host=host)
        for i in range(brokers)
    ]


def render_server_properties(
    node: NodeSpec,
    nodes: Sequence[NodeSpec],
    node_dir: Path,
    security: BrokerSecurity | None = None,
) -> str:
    """The ``server.properties`` of ``node`` in a cluster of ``nodes``, data under ``node_dir``.

    With ``security``, the client listener is SASL_SSL, the controller listener asks for a
    SASL/PLAIN login and ACLs are enforced (:mod:`~streamproc.kafka.localsecurity`); the
    result then holds passwords and must be written with mode 0600.
    """
    count = len(nodes)
    client = "SASL_SSL" if security is not None else "PLAINTEXT"
    controller = "SASL_PLAINTEXT" if security is not None else "PLAINTEXT"
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    replicated = count >= 3
    rf = 3 if replicated else 1
    min_isr = 2 if replicated else 1
    lines = [
        "# Written by the streamproc local Kafka launcher at every start; edits are lost.",
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners={client}://{node.host}:{node.client_port},"
        f"CONTROLLER://{node.host}:{node.controller_port}",
        f"advertised.listeners={client}://{node.host}:{node.client_port}",
        "controller.listener.names=CONTROLLER",
        f"inter.broker.listener.name={client}",
        f"listener.security.protocol.map=CONTROLLER:{controller},{client}:{client}",
        f"log.dirs={node_dir / 'data'}",
        "num.partitions=1",
        f"default.replication.factor={rf}",
        f"offsets.topic.replication.factor={rf}",
        f"transaction.state.log.replication.factor={rf}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={rf}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "num.io.threads=4",
    ]
    if replicated:
        # Notice a killed node within seconds (fault tests) instead of the 9 s / 30 s defaults.
        lines += [
            "broker.heartbeat.interval.ms=1000",
            "broker.session.timeout.ms=6000",
            "replica.lag.time.max.ms=10000",
        ]
    if security is not None:
        lines += security.server_properties()
    return "\n".join(lines) + "\n"


def render_log4j2_properties(log_file: Path) -> str:
    """A log4j2 config that writes the broker's log to ``log_file`` (rolled at 50 MB, 3 kept)."""
    return (
        "status = warn\n"
        "appender.file.type = RollingFile\n"
        "appender.file.name = file\n"
        f"appender.file.fileName = {log_file}\n"
        f"appender.file.filePattern = {log_file}.%i\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "appender.file.policies.type = Policies\n"
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy\n"
        "appender.file.policies.size.size = 50MB\n"
        "appender.file.strategy.type = DefaultRolloverStrategy\n"
        "appender.file.strategy.max = 3\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.file.ref = file\n"
        "logger.request.name = kafka.request.logger\n"
        "logger.request.level = WARN\n"
        "logger.controller.name = kafka.controller\n"
        "logger.controller.level = INFO\n"
        "logger.statechange.name = state.change.logger\n"
        "logger.statechange.level = INFO\n"
    )


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something listens on ``host:port`` (a TIME_WAIT leftover does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def find_free_ports(count: int, *, low: int = 20000, high: int = 32000) -> int:
    """The first of ``count`` consecutive free ports in ``[low, high)`` (below Linux's ephemeral
    range, so outgoing connections do not take them meanwhile).

    Raises
    ------
    LauncherError
        If no such block is found after many random tries.
    """
    rng = uuid.uuid4().int
    for attempt in range(200):
        base = low + (rng + attempt * 7919) % (high - low - count)
        if not any(port_in_use(base + i) for i in range(count)):
            return base
    raise LauncherError(f"found no {count} consecutive free ports in {low}-{high}")


def check_ports_free(nodes: Sequence[NodeSpec]) -> None:
    first = nodes[0].client_port
    last = nodes[-1].controller_port
    for node in nodes:
        for role, port in (("client", node.client_port), ("controller", node.controller_port)):
            if port_in_use(port, node.host):
                raise LauncherError(
                    f"port {port} on {node.host} is already in use (needed as the {role} port "
                    f"of Kafka node {node.node_id}; this {len(nodes)}-broker cluster needs ports "
                    f"{first}-{last}); choose other ports with --port, or stop the Kafka that "
                    "holds it (`streamproc kafka stop`)"
                )
