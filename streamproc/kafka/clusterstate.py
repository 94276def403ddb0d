"""What the launcher records about a local cluster: ``cluster.json``, ``state.json``, status.

``cluster.json`` is kept for the life of the data dir (cluster id, broker count and security
mode: the storage is formatted for them); ``state.json`` exists while the cluster runs (pids,
ports, bootstrap servers, security mode, started_at). Neither holds a secret.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from streamproc.errors import LauncherError
from streamproc.kafka.localsecurity import SECURITY_MODES, SecurityMode, protocol_of

__all__ = [
    "CLUSTER_FILE",
    "STATE_FILE",
    "ClusterInfo",
    "ClusterState",
    "ClusterStatus",
    "NodeInfo",
    "jsonable",
    "load_cluster_id",
    "read_state",
    "recorded_security",
    "utc_now",
    "write_state",
]

STATE_FILE = "state.json"
CLUSTER_FILE = "cluster.json"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One running (or last started) node of a local cluster."""

    node_id: int
    pid: int
    client_port: int
    controller_port: int
    log_file: Path
    console_file: Path
    config_file: Path


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """A local cluster as written to ``state.json`` by ``launcher.start_kafka``."""

    data_dir: Path
    bootstrap_servers: str
    cluster_id: str
    kafka_version: str
    started_at: str
    java: str
    libs_dir: Path
    heap: tuple[str, ...]
    nodes: tuple[NodeInfo, ...]
    exit_with_parent: bool = False
    security: SecurityMode = "plaintext"
    already_running: bool = field(default=False, compare=False)

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    @property
    def log_files(self) -> list[Path]:
        return [n.log_file for n in self.nodes]

    def node(self, node_id: int) -> NodeInfo:
        """The node with ``node_id``; LauncherError if the cluster has none."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise LauncherError(
            f"the cluster in {self.data_dir} has no node {node_id}; its nodes are "
            f"{', '.join(str(n.node_id) for n in self.nodes)}"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("already_running")
        return jsonable(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterInfo:
        nodes = tuple(
            NodeInfo(
                node_id=int(n["node_id"]),
                pid=int(n["pid"]),
                client_port=int(n["client_port"]),
                controller_port=int(n["controller_port"]),
                log_file=Path(n["log_file"]),
                console_file=Path(n["console_file"]),
                config_file=Path(n["config_file"]),
            )
            for n in data["nodes"]
        )
        return cls(
            data_dir=Path(data["data_dir"]),
            bootstrap_servers=str(data["bootstrap_servers"]),
            cluster_id=str(data["cluster_id"]),
            kafka_version=str(data["kafka_version"]),
            started_at=str(data["started_at"]),
            java=str(data["java"]),
            libs_dir=Path(data["libs_dir"]),
            heap=tuple(data["heap"]),
            nodes=nodes,
            exit_with_parent=bool(data.get("exit_with_parent", False)),
            security=_security_mode(data.get("security", "plaintext")),
        )


def _security_mode(value: object) -> SecurityMode:
    for mode in SECURITY_MODES:
        if value == mode:
            return mode
    raise TypeError(f"security must be one of {', '.join(SECURITY_MODES)}, got {value!r}")


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with paths as strings and tuples as lists, as json.loads would return it."""
    return cast(dict[str, Any], json.loads(json.dumps(data, default=str)))


def read_state(data_dir: Path) -> ClusterInfo | None:
    path = data_dir / STATE_FILE
    try:
        return ClusterInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise LauncherError(
            f"the launcher state file {path} is unreadable ({exc}); stop any Kafka started from "
            f"{data_dir} by hand, then delete {path}"
        ) from exc


def write_state(info: ClusterInfo) -> None:
    path = info.data_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.as_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _random_cluster_id() -> str:
    # Kafka's Uuid.randomUuid(): 16 random bytes, url-safe base64 without padding, never
    # starting with "-" (it would read as a command-line flag).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def recorded_security(data_dir: Path) -> SecurityMode | None:
    """The security mode ``data_dir`` was formatted for; None for a new data dir."""
    path = data_dir / CLUSTER_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        # Data dirs made before the secured mode existed are plaintext.
        return _security_mode(meta.get("security", "plaintext"))
    except (ValueError, TypeError, AttributeError) as exc:
        raise LauncherError(
            f"{path} is unreadable ({exc}); remove {data_dir} (`streamproc kafka stop "
            f"--wipe --data-dir {data_dir}`) to start afresh"
        ) from exc


def load_cluster_id(data_dir: Path, brokers: int, security: SecurityMode = "plaintext") -> str:
    """The cluster id this data dir is formatted for (a new one for a new data dir).

    Raises
    ------
    LauncherError
        If the data dir was formatted for another broker count or security mode.
    """
    path = data_dir / CLUSTER_FILE
    if path.is_file():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            cluster_id, formatted_for = str(meta["cluster_id"]), int(meta["brokers"])
            formatted_security = _security_mode(meta.get("security", "plaintext"))
        except (ValueError, KeyError, TypeError) as exc:
            raise LauncherError(
                f"{path} is unreadable ({exc}); remove {data_dir} (`streamproc kafka stop "
                f"--wipe --data-dir {data_dir}`) to start afresh"
            ) from exc
        if formatted_for != brokers:
            raise LauncherError(
                f"{data_dir} holds a {formatted_for}-broker cluster, but {brokers} broker(s) "
                f"were asked for; use another --data-dir, or delete its data with `streamproc "
                f"kafka stop --wipe --data-dir {data_dir}`"
            )
        if formatted_security != security:
            raise LauncherError(
                f"{data_dir} holds a {formatted_security} cluster, but --security {security} "
                f"was asked for (its users and certificates are made when the storage is "
                f"formatted); use another --data-dir, or delete its data with `streamproc "
                f"kafka stop --wipe --data-dir {data_dir}`"
            )
        return cluster_id
    cluster_id = _random_cluster_id()
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "cluster_id": cluster_id,
        "brokers": brokers,
        "security": security,
        "created_at": utc_now(),
    }
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return cluster_id


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


ClusterState = Literal["running", "degraded", "stopped"]


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """What ``launcher.kafka_status`` found."""

    data_dir: Path
    info: ClusterInfo | None
    alive: dict[int, bool]
    brokers_answering: int | None

    @property
    def security_protocol(self) -> str | None:
        """The protocol clients use (PLAINTEXT or SASL_SSL); None when nothing was started."""
        return protocol_of(self.info.security) if self.info else None

    @property
    def state(self) -> ClusterState:
        if self.info is None or not any(self.alive.values()):
            return "stopped"
        return "running" if all(self.alive.values()) else "degraded"

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "state": self.state,
            "bootstrap_servers": self.info.bootstrap_servers if self.info else None,
            "security_protocol": self.security_protocol,
            "brokers_answering": self.brokers_answering,
            "nodes": [
                {**jsonable(asdict(n)), "alive": self.alive[n.node_id]}
                for n in (self.info.nodes if self.info else ())
            ],
            "cluster": self.info.as_dict() if self.info else None,
        }
