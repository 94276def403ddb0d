"""The local Apache Kafka launcher: KRaft brokers as detached Java processes, for dev and tests.

The jars come from Maven Central (``mvn`` against the project's ``kafka/pom.xml``, cached in
``settings.kafka_cache_dir``) or from ``$KAFKA_HOME/libs``. Each node is a combined
broker+controller started with ``java -cp 'libs/*' kafka.Kafka server.properties`` in its own
session, so it outlives the command that started it.

Port scheme: with ``brokers=n`` and first port ``P``, node ``i`` (1-based) serves clients on
``P + i - 1`` and the controller quorum on ``P + n + i - 1``. One broker uses ``P`` and ``P+1``
(9092 and 9093 by default); three use ``P..P+2`` for clients and ``P+3..P+5`` for the quorum.

Layout of a data dir::

    DATA_DIR/
      cluster.json          kept: cluster id, broker count (the storage is formatted for them)
      state.json            while running: pids, ports, bootstrap servers, started_at
      node-1/
        server.properties   written at every start (the ports may change between runs)
        log4j2.properties
        server.log          the broker's log
        console.log         the JVM's stdout and stderr (crashes before logging starts)
        data/               log.dirs: partitions and the KRaft metadata log

Every broker process carries ``-Dstreamproc.kafka.data.dir=DATA_DIR`` on its command line;
:func:`stop_kafka` signals only processes that carry it, so a pid reused by an unrelated
process is never signalled.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

import streamproc
from streamproc.config import Settings
from streamproc.errors import LauncherError
from streamproc.kafka.clients import quiet_client_logger

__all__ = [
    "SUPPORTED_BROKER_COUNTS",
    "ClusterInfo",
    "ClusterStatus",
    "JavaInfo",
    "NodeInfo",
    "NodeSpec",
    "check_java",
    "fetch_kafka_jars",
    "find_free_ports",
    "kafka_status",
    "kafka_version",
    "kill_broker",
    "node_layout",
    "parse_java_version",
    "pom_path",
    "port_in_use",
    "render_log4j2_properties",
    "render_server_properties",
    "restart_broker",
    "run_kafka_tool",
    "start_kafka",
    "stop_kafka",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

SUPPORTED_BROKER_COUNTS = (1, 3)
MIN_JAVA = 17
HOST = "127.0.0.1"
STATE_FILE = "state.json"
CLUSTER_FILE = "cluster.json"
MARKER_PROPERTY = "-Dstreamproc.kafka.data.dir="
COMPLETE_MARKER = ".complete"
LOG_TAIL_LINES = 30
READY_STREAK = 3


# --- the runtime: pom, jars, java --------------------------------------------------------------


def pom_path() -> Path:
    """The pom that pins the Kafka runtime: packaged ``_kafka/pom.xml``, else the repo's."""
    here = Path(streamproc.__file__).resolve().parent
    packaged = here / "_kafka" / "pom.xml"
    return packaged if packaged.is_file() else here.parent / "kafka" / "pom.xml"


def kafka_version(pom: Path | None = None) -> str:
    """The ``kafka.version`` property of the runtime pom (e.g. ``"4.0.0"``).

    Raises
    ------
    LauncherError
        If the pom is missing, unparsable or has no ``kafka.version`` property.
    """
    path = pom if pom is not None else pom_path()
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as exc:
        raise LauncherError(
            f"the Kafka runtime pom is missing: expected {path}; reinstall streamproc "
            "or run from a checkout that has kafka/pom.xml"
        ) from exc
    except ET.ParseError as exc:
        raise LauncherError(f"cannot parse the Kafka runtime pom {path}: {exc}") from exc
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "kafka.version" and (element.text or "").strip():
            return (element.text or "").strip()
    raise LauncherError(
        f"{path} has no <kafka.version> property; expected e.g. "
        "<kafka.version>4.0.0</kafka.version>"
    )


@dataclass(frozen=True, slots=True)
class JavaInfo:
    """The ``java`` the launcher runs and its major version."""

    path: str
    major: int
    version_line: str


_JAVA_VERSION = re.compile(r'version "(?P<version>[^"]+)"')


def parse_java_version(text: str) -> int:
    """The major version in ``java -version`` output (``"1.8.0_392"`` is 8, ``"17.0.15"`` 17).

    Raises
    ------
    LauncherError
        If the text holds no ``version "..."``.

    Examples
    --------
    >>> parse_java_version('openjdk version "17.0.15" 2025-04-15')
    17
    >>> parse_java_version('java version "1.8.0_392"')
    8
    >>> parse_java_version('openjdk version "21-ea" 2023-09-19')
    21
    """
    match = _JAVA_VERSION.search(text)
    numbers = re.findall(r"\d+", match.group("version")) if match else []
    if not numbers:
        raise LauncherError(
            "cannot read the Java version: expected a line like 'openjdk version \"17.0.15\"' "
            f"from `java -version`, got {text.strip()[:200]!r}"
        )
    major = int(numbers[0])
    if major == 1 and len(numbers) > 1:  # the pre-9 scheme: 1.8.0 is Java 8
        major = int(numbers[1])
    return major


_JAVA_CACHE: dict[str, JavaInfo] = {}


def check_java(environ: Mapping[str, str] | None = None) -> JavaInfo:
    """Find ``java`` (``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else PATH), check it is 17+.

    Parameters
    ----------
    environ
        The environment to read JAVA_HOME and PATH from; default ``os.environ`` (JAVA_HOME
        belongs to the Java installation, not to streamproc's settings).

    Raises
    ------
    LauncherError
        If ``java`` is not found or is older than Java 17.
    """
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home:
        java = str(Path(java_home) / "bin" / "java")
        if not os.access(java, os.X_OK):
            raise LauncherError(
                f"JAVA_HOME={java_home} has no executable bin/java; point JAVA_HOME at a JDK "
                f"{MIN_JAVA}+ or unset it to use the java on PATH"
            )
    else:
        found = shutil.which("java", path=env.get("PATH"))
        if found is None:
            raise LauncherError(
                f"`java` is not on PATH; Apache Kafka needs Java {MIN_JAVA} or newer: install a "
                "JDK (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
            )
        java = found
    if java in _JAVA_CACHE:
        return _JAVA_CACHE[java]
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LauncherError(f"cannot run `{java} -version`: {exc}") from exc
    output = proc.stderr + proc.stdout
    major = parse_java_version(output)
    line = next((ln for ln in output.splitlines() if "version" in ln), output.strip())
    if major < MIN_JAVA:
        raise LauncherError(
            f"Java {major} found at {java} ({line.strip()}); Apache Kafka 4 needs Java "
            f"{MIN_JAVA} or newer: install a JDK {MIN_JAVA}+ and put it first on PATH or set "
            "JAVA_HOME to it"
        )
    info = JavaInfo(path=java, major=major, version_line=line.strip())
    _JAVA_CACHE[java] = info
    return info


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
    else:
        logger.info("%s", message)


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def fetch_kafka_jars(settings: Settings, *, progress: Progress | None = None) -> Path:
    """The folder of Apache Kafka's jars, resolved with Maven on first use and cached.

    With ``settings.kafka_home`` set, ``$KAFKA_HOME/libs`` is used and Maven never runs.
    Otherwise the jars go to ``settings.kafka_cache_dir / <kafka.version> / libs``; a
    ``.complete`` marker written last makes later calls return at once.

    Parameters
    ----------
    settings
        Supplies ``kafka_home`` and ``kafka_cache_dir``.
    progress
        Called with one-line progress messages (e.g. ``click.echo``).

    Raises
    ------
    LauncherError
        If KAFKA_HOME has no jars, ``mvn`` is not on PATH, or Maven fails.
    """
    if settings.kafka_home is not None:
        libs = settings.kafka_home.expanduser() / "libs"
        if not any(libs.glob("kafka_*.jar")):
            raise LauncherError(
                f"KAFKA_HOME={settings.kafka_home} has no libs/kafka_*.jar; point KAFKA_HOME at "
                "an unpacked Apache Kafka release (e.g. kafka_2.13-4.0.0) or unset it to let "
                "streamproc resolve the jars with Maven"
            )
        return libs
    pom = pom_path()
    version = kafka_version(pom)
    base = settings.kafka_cache_dir.expanduser() / version
    libs = base / "libs"
    if (libs / COMPLETE_MARKER).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LauncherError(
            "`mvn` (Apache Maven) is not on PATH; it resolves Apache Kafka's jars from Maven "
            "Central once. Install Maven 3.6+ (e.g. apt-get install maven), or set KAFKA_HOME to "
            "an unpacked Apache Kafka release"
        )
    base.mkdir(parents=True, exist_ok=True)
    # Run Maven on a copy: the packaged pom may sit in a read-only site-packages.
    work_pom = base / "pom.xml"
    shutil.copyfile(pom, work_pom)
    partial = base / f"libs.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    _say(progress, f"resolving Apache Kafka {version} jars with Maven into {libs} ...")
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(work_pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LauncherError(
            f"mvn did not finish resolving Apache Kafka {version}'s jars within 30 min; check "
            "network access to Maven Central (https://repo.maven.apache.org) and the proxy or "
            "mirror in ~/.m2/settings.xml"
        ) from exc
    if proc.returncode != 0 or not any(partial.glob("kafka_*.jar")):
        shutil.rmtree(partial, ignore_errors=True)
        raise LauncherError(
            f"mvn could not resolve Apache Kafka {version}'s jars (exit code {proc.returncode}; "
            f"command: {' '.join(command)}). Last lines of its output:\n"
            f"{_tail(proc.stdout + proc.stderr, 20)}\n"
            "Check network access to Maven Central (https://repo.maven.apache.org) and the "
            "proxy/mirror settings in ~/.m2/settings.xml, or set KAFKA_HOME to an unpacked "
            "Apache Kafka release"
        )
    if libs.exists():  # an earlier interrupted run
        shutil.rmtree(libs, ignore_errors=True)
    try:
        partial.rename(libs)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
        if not (libs / COMPLETE_MARKER).is_file():
            raise
        return libs
    (libs / COMPLETE_MARKER).write_text(version + "\n", encoding="utf-8")
    _say(progress, f"Apache Kafka {version} jars ready in {libs}")
    return libs


def _libs_version(libs: Path) -> str:
    for jar in sorted(libs.glob("kafka_*.jar")):
        match = re.fullmatch(r"kafka_[\d.]+-(?P<v>\d[\w.\-]*?)\.jar", jar.name)
        if match:
            return match.group("v")
    return kafka_version()


def _tools_log4j2(settings: Settings) -> Path:
    """A log4j2 config for the Kafka tools: warnings and errors to stderr."""
    path = settings.kafka_cache_dir.expanduser() / "tools-log4j2.properties"
    text = (
        "status = error\n"
        "appender.stderr.type = Console\n"
        "appender.stderr.name = stderr\n"
        "appender.stderr.target = SYSTEM_ERR\n"
        "appender.stderr.layout.type = PatternLayout\n"
        "appender.stderr.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.stderr.ref = stderr\n"
    )
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def run_kafka_tool(
    settings: Settings, main_class: str, args: Sequence[str], *, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's Java tools with the cached jars; its output is captured as text.

    Parameters
    ----------
    settings
        Supplies the jars (see :func:`fetch_kafka_jars`).
    main_class
        E.g. ``org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`` or
        ``org.apache.kafka.tools.TopicCommand``.
    args
        The tool's arguments, e.g. ``["--bootstrap-server", "127.0.0.1:9092", "--list"]``.
    timeout
        Seconds before the tool is killed.

    Returns
    -------
    subprocess.CompletedProcess
        With ``returncode``, ``stdout`` and ``stderr``; a non-zero exit is not raised.

    Raises
    ------
    LauncherError
        If Java or the jars are unavailable, or the tool runs longer than ``timeout``.
    """
    java = check_java()
    libs = fetch_kafka_jars(settings)
    command = [
        java.path,
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={_tools_log4j2(settings)}",
        "-cp",
        f"{libs}{os.sep}*",
        main_class,
        *args,
    ]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LauncherError(
            f"the Kafka tool {main_class} did not finish within {timeout:g} s "
            f"(arguments: {' '.join(args)})"
        ) from exc


# --- configuration ---------------------------------------------------------------------------


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


def render_server_properties(node: NodeSpec, nodes: Sequence[NodeSpec], node_dir: Path) -> str:
    """The ``server.properties`` of ``node`` in a cluster of ``nodes``, data under ``node_dir``."""
    count = len(nodes)
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    replicated = count >= 3
    rf = 3 if replicated else 1
    min_isr = 2 if replicated else 1
    lines = [
        "# Written by the streamproc local Kafka launcher at every start; edits are lost.",
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://{node.host}:{node.client_port},"
        f"CONTROLLER://{node.host}:{node.controller_port}",
        f"advertised.listeners=PLAINTEXT://{node.host}:{node.client_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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


def _check_ports_free(nodes: Sequence[NodeSpec]) -> None:
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


# --- state -----------------------------------------------------------------------------------


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
    """A local cluster as written to ``state.json`` by :func:`start_kafka`."""

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
        return _jsonable(data)

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
        )


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with paths as strings and tuples as lists, as json.loads would return it."""
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


def _data_dir(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve()


def _read_state(data_dir: Path) -> ClusterInfo | None:
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


def _write_state(info: ClusterInfo) -> None:
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


def _cluster_id(data_dir: Path, brokers: int) -> str:
    """The cluster id this data dir is formatted for (a new one for a new data dir)."""
    path = data_dir / CLUSTER_FILE
    if path.is_file():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            cluster_id, formatted_for = str(meta["cluster_id"]), int(meta["brokers"])
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
        return cluster_id
    cluster_id = _random_cluster_id()
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = {"cluster_id": cluster_id, "brokers": brokers, "created_at": _now()}
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return cluster_id


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- processes -------------------------------------------------------------------------------

# Brokers started by this Python process, kept so they can be reaped (no zombies, no
# "subprocess still running" warnings); brokers started by another process are found by pid.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _cmdline(pid: int) -> list[str] | None:
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            raw = proc.read_bytes()
        except OSError:
            return None
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None
    try:
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split() or None


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live java process started by the launcher for ``data_dir``."""
    if pid <= 0:  # never os.kill(0 or -1, ...): that would signal whole process groups
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    args = _cmdline(pid)
    if not args:
        return False
    return "java" in Path(args[0]).name and f"{MARKER_PROPERTY}{data_dir}" in args


def _orphans(data_dir: Path) -> list[int]:
    """Pids of brokers of ``data_dir`` that no state file lists (Linux only)."""
    if not Path("/proc/self").exists():
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_our_broker(int(entry.name), data_dir):
            pids.append(int(entry.name))
    return pids


def _wait_gone(pids: Sequence[int], data_dir: Path, timeout: float) -> list[int]:
    """Wait until none of ``pids`` is a broker of ``data_dir``; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive:
        alive = [pid for pid in alive if _is_our_broker(pid, data_dir)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for pid in pids:
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            del _CHILDREN[pid]
    return alive


def _heap(brokers: int) -> tuple[str, ...]:
    return ("-Xmx512m", "-Xms256m") if brokers == 1 else ("-Xmx384m", "-Xms128m")


def _node_dir(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}"


def _parent_death_signal(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when ``parent`` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        logger.debug("exit_with_parent is supported on Linux only; ignored")
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1  # from <sys/prctl.h>

    def preexec() -> None:  # runs in the child between fork and exec: keep it minimal
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _spawn(info: ClusterInfo, node: NodeInfo) -> subprocess.Popen[bytes]:
    node_dir = node.config_file.parent
    command = [
        info.java,
        *info.heap,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
        f"{MARKER_PROPERTY}{info.data_dir}",
        "-cp",
        f"{info.libs_dir}{os.sep}*",
        "kafka.Kafka",
        str(node.config_file),
    ]
    with node.console_file.open("ab") as console:
        console.write(f"\n--- started by streamproc at {_now()}\n".encode())
        console.flush()
        proc = subprocess.Popen(
            command,
            cwd=node_dir,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(os.getpid()) if info.exit_with_parent else None,
        )
    _CHILDREN[proc.pid] = proc
    logger.info("started Kafka node %d (pid %d): %s", node.node_id, proc.pid, node.log_file)
    return proc


def _log_tail(node: NodeInfo, lines: int = LOG_TAIL_LINES) -> str:
    parts = []
    for path in (node.console_file, node.log_file):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        body = "\n".join(
            ln for ln in text.splitlines() if ln.strip() and not ln.startswith("--- started by")
        )
        if body:
            parts.append(f"--- {path}:\n{_tail(body, lines)}")
    return "\n".join(parts) or f"(no log output in {node.log_file.parent})"


def _format_storage(java: JavaInfo, libs: Path, configs: Sequence[Path], cluster_id: str) -> None:
    """Format the storage of each node (in parallel: each run is a JVM start)."""
    runs = []
    for config in configs:
        command = [
            java.path,
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={config.parent / 'log4j2.properties'}",
            "-cp",
            f"{libs}{os.sep}*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(config),
            "--ignore-formatted",
        ]
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        runs.append((config, proc))
    failures = []
    for config, proc in runs:
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        if proc.returncode != 0:
            text = output.decode(errors="replace")
            failures.append(f"{config.parent} (exit code {proc.returncode}):\n{_tail(text, 20)}")
    if failures:
        raise LauncherError(
            "formatting the Kafka storage failed for "
            + "\n".join(failures)
            + "\nIf the data dir is from another Kafka version or cluster, use another "
            "--data-dir or run `streamproc kafka stop --wipe`"
        )


def _probe_config(info: ClusterInfo) -> dict[str, Any]:
    # The launcher's own cluster is plaintext on localhost: no client_config() security here.
    return {"bootstrap.servers": info.bootstrap_servers, "logger": quiet_client_logger()}


def _wait_ready(
    info: ClusterInfo, procs: Mapping[int, subprocess.Popen[bytes]], timeout: float
) -> None:
    """Wait until the metadata lists every node; raise with the log tail if one dies."""
    admin = AdminClient(_probe_config(info))
    expected = {n.node_id for n in info.nodes}
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    streak = 0
    while True:
        for node_id, proc in procs.items():
            code = proc.poll()
            if code is not None:
                node = info.node(node_id)
                raise LauncherError(
                    f"Kafka node {node_id} (pid {proc.pid}) exited with code {code} while "
                    f"starting; last lines of its logs:\n{_log_tail(node)}"
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            metadata = admin.list_topics(timeout=max(0.2, min(1.0, remaining)))
            seen = set(metadata.brokers)
        except KafkaException:
            seen = set()
        # Brokers answer from their own metadata image, which lags while one (re)joins:
        # ask until several answers in a row list every node.
        streak = streak + 1 if expected <= seen else 0
        if streak >= READY_STREAK:
            return
        time.sleep(0.2)
    missing = sorted(expected - seen)
    tails = "\n".join(_log_tail(info.node(i)) for i in missing)
    raise LauncherError(
        f"Kafka at {info.bootstrap_servers} was not ready within {timeout:g} s (node(s) "
        f"{', '.join(map(str, missing))} not in the cluster metadata); raise --timeout on a slow "
        f"machine. Last lines of the logs:\n{tails}"
    )


# --- the public operations -------------------------------------------------------------------


def start_kafka(
    settings: Settings,
    *,
    brokers: int = 1,
    port: int | None = None,
    data_dir: Path | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
    exit_with_parent: bool = False,
) -> ClusterInfo:
    """Start a local KRaft cluster of ``brokers`` combined nodes and wait until it is ready.

    Idempotent: if a cluster from ``data_dir`` is already running, its info is returned with
    ``already_running=True`` and nothing is started.

    Parameters
    ----------
    settings
        Supplies the jars (``kafka_home``, ``kafka_cache_dir``) and the defaults of ``port``
        (``kafka_port``) and ``data_dir`` (``kafka_data_dir``).
    brokers
        1 (development) or 3 (replication and fault tests).
    port
        The first client port; see the module docstring for the port scheme.
    data_dir
        Where data, logs and ``state.json`` live; a later start reuses the data.
    timeout
        Seconds to wait until every broker answers a metadata request.
    progress
        Called with one-line progress messages.
    exit_with_parent
        Linux: the brokers get SIGTERM when the calling process dies, even by SIGKILL (test
        fixtures use it so a killed test run leaves no broker behind). Default False: the
        brokers outlive the caller, as ``streamproc kafka start`` needs.

    Returns
    -------
    ClusterInfo
        Bootstrap servers, pids and log files.

    Raises
    ------
    LauncherError
        If a port is taken, Java or the jars are unavailable, a node dies while starting, or
        the cluster is not ready within ``timeout`` (the nodes started are stopped again).
    """
    data_dir = _data_dir(data_dir if data_dir is not None else settings.kafka_data_dir)
    first_port = port if port is not None else settings.kafka_port
    nodes = node_layout(brokers, first_port)
    current = _read_state(data_dir)
    if current is not None:
        alive = [n.node_id for n in current.nodes if _is_our_broker(n.pid, data_dir)]
        if len(alive) == len(current.nodes):
            if len(current.nodes) != brokers:
                raise LauncherError(
                    f"a {len(current.nodes)}-broker Kafka from {data_dir} is already running at "
                    f"{current.bootstrap_servers}; stop it first (`streamproc kafka stop "
                    f"--data-dir {data_dir}`)"
                )
            _say(progress, f"Kafka from {data_dir} is already running")
            return ClusterInfo(**{**_fields(current), "already_running": True})
        if alive:
            raise LauncherError(
                f"the Kafka from {data_dir} is partly running (node(s) "
                f"{', '.join(map(str, alive))} of {len(current.nodes)} alive); restart the dead "
                f"ones or stop all with `streamproc kafka stop --data-dir {data_dir}`"
            )
        logger.info("removing the stale state file of %s (no node is running)", data_dir)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
    orphans = _orphans(data_dir)
    if orphans:
        raise LauncherError(
            f"Kafka process(es) {', '.join(map(str, orphans))} still run from {data_dir} without "
            f"a state file; stop them with `streamproc kafka stop --data-dir {data_dir}`"
        )
    _check_ports_free(nodes)
    java = check_java()
    libs = fetch_kafka_jars(settings, progress=progress)
    cluster_id = _cluster_id(data_dir, brokers)
    version = _libs_version(libs)

    node_infos = []
    unformatted: list[Path] = []
    for spec in nodes:
        node_dir = _node_dir(data_dir, spec.node_id)
        (node_dir / "data").mkdir(parents=True, exist_ok=True)
        config = node_dir / "server.properties"
        config.write_text(render_server_properties(spec, nodes, node_dir), encoding="utf-8")
        log_file = node_dir / "server.log"
        (node_dir / "log4j2.properties").write_text(
            render_log4j2_properties(log_file), encoding="utf-8"
        )
        if not (node_dir / "data" / "meta.properties").is_file():
            unformatted.append(config)
        node_infos.append(
            NodeInfo(
                node_id=spec.node_id,
                pid=0,
                client_port=spec.client_port,
                controller_port=spec.controller_port,
                log_file=log_file,
                console_file=node_dir / "console.log",
                config_file=config,
            )
        )
    if unformatted:
        _say(progress, f"formatting the storage of {len(unformatted)} node(s) ...")
        _format_storage(java, libs, unformatted, cluster_id)
    info = ClusterInfo(
        data_dir=data_dir,
        bootstrap_servers=",".join(f"{n.host}:{n.client_port}" for n in nodes),
        cluster_id=cluster_id,
        kafka_version=version,
        started_at=_now(),
        java=java.path,
        libs_dir=libs,
        heap=_heap(brokers),
        exit_with_parent=exit_with_parent,
        nodes=tuple(node_infos),
    )
    _say(progress, f"starting Apache Kafka {version}: {brokers} broker(s) from {data_dir} ...")
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        started = []
        for node in info.nodes:
            proc = _spawn(info, node)
            procs[node.node_id] = proc
            started.append(_replace_pid(node, proc.pid))
            info = ClusterInfo(
                **{**_fields(info), "nodes": tuple(started) + info.nodes[len(started) :]}
            )
            _write_state(info)
        _wait_ready(info, procs, timeout)
    except BaseException:
        for proc in procs.values():
            with contextlib.suppress(OSError):
                proc.kill()
        _wait_gone([p.pid for p in procs.values()], data_dir, 10.0)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    _say(progress, f"Kafka ready at {info.bootstrap_servers}")
    return info


def _fields(info: ClusterInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in ClusterInfo.__dataclass_fields__}


def _replace_pid(node: NodeInfo, pid: int) -> NodeInfo:
    return NodeInfo(**{**{k: getattr(node, k) for k in NodeInfo.__dataclass_fields__}, "pid": pid})


def stop_kafka(data_dir: Path, *, wipe: bool = False, timeout: float = 30.0) -> list[int]:
    """Stop the cluster started from ``data_dir``: SIGTERM, then SIGKILL after ``timeout`` s.

    Only processes that are java and carry this data dir on their command line are signalled.
    The state file is removed; the data is kept unless ``wipe``.

    Returns
    -------
    list of int
        The pids that were stopped (empty if nothing was running).
    """
    data_dir = _data_dir(data_dir)
    state = _read_state(data_dir)
    candidates = set(_orphans(data_dir))
    if state is not None:
        candidates.update(n.pid for n in state.nodes)
    pids = sorted(pid for pid in candidates if _is_our_broker(pid, data_dir))
    for pid in pids:
        logger.info("stopping Kafka pid %d (SIGTERM)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    survivors = _wait_gone(pids, data_dir, timeout)
    for pid in survivors:
        logger.warning("Kafka pid %d ignored SIGTERM for %g s; sending SIGKILL", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    still = _wait_gone(survivors, data_dir, 10.0)
    if still:
        raise LauncherError(
            f"Kafka process(es) {', '.join(map(str, still))} survived SIGKILL; check them with ps"
        )
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    if wipe:
        _wipe(data_dir)
    return pids


def _wipe(data_dir: Path) -> None:
    # Remove only what the launcher made, so a mistyped --data-dir cannot erase a home folder.
    if not data_dir.is_dir():
        return
    for entry in data_dir.iterdir():
        if entry.is_dir() and re.fullmatch(r"node-\d+", entry.name):
            shutil.rmtree(entry)
        elif entry.name in (CLUSTER_FILE, STATE_FILE, STATE_FILE + ".tmp"):
            entry.unlink()
    with contextlib.suppress(OSError):
        data_dir.rmdir()


ClusterState = Literal["running", "degraded", "stopped"]


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """What :func:`kafka_status` found."""

    data_dir: Path
    info: ClusterInfo | None
    alive: dict[int, bool]
    brokers_answering: int | None

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
            "brokers_answering": self.brokers_answering,
            "nodes": [
                {**_jsonable(asdict(n)), "alive": self.alive[n.node_id]}
                for n in (self.info.nodes if self.info else ())
            ],
            "cluster": self.info.as_dict() if self.info else None,
        }


def kafka_status(data_dir: Path, *, probe_timeout: float = 3.0) -> ClusterStatus:
    """The state of the cluster of ``data_dir``: which nodes live, how many brokers answer."""
    data_dir = _data_dir(data_dir)
    info = _read_state(data_dir)
    if info is None:
        return ClusterStatus(data_dir, None, {}, None)
    alive = {n.node_id: _is_our_broker(n.pid, data_dir) for n in info.nodes}
    answering: int | None = None
    if any(alive.values()):
        admin = AdminClient(_probe_config(info))
        try:
            answering = len(admin.list_topics(timeout=probe_timeout).brokers)
        except KafkaException:
            answering = 0
    return ClusterStatus(data_dir, info, alive, answering)


def kill_broker(
    data_dir: Path, node_id: int, sig: int = signal.SIGKILL, *, timeout: float = 30.0
) -> int:
    """Send ``sig`` to node ``node_id`` of the cluster of ``data_dir`` (for fault tests).

    For SIGKILL and SIGTERM, waits up to ``timeout`` s until the process is gone.

    Returns
    -------
    int
        The pid signalled.

    Raises
    ------
    LauncherError
        If no cluster runs from ``data_dir`` or the node is not running.
    """
    data_dir = _data_dir(data_dir)
    info = _read_state(data_dir)
    if info is None:
        raise LauncherError(f"no Kafka runs from {data_dir} (no {STATE_FILE})")
    node = info.node(node_id)
    if not _is_our_broker(node.pid, data_dir):
        raise LauncherError(f"Kafka node {node_id} of {data_dir} (pid {node.pid}) is not running")
    os.kill(node.pid, sig)
    if sig in (signal.SIGKILL, signal.SIGTERM) and _wait_gone([node.pid], data_dir, timeout):
        raise LauncherError(
            f"Kafka node {node_id} (pid {node.pid}) still runs {timeout:g} s after {sig}"
        )
    return node.pid


def restart_broker(data_dir: Path, node_id: int, *, timeout: float = 60.0) -> NodeInfo:
    """Start node ``node_id`` again with its existing config and wait until it rejoins.

    Raises
    ------
    LauncherError
        If no cluster runs from ``data_dir``, the node still runs, its port is taken, or it
        does not rejoin within ``timeout`` s.
    """
    data_dir = _data_dir(data_dir)
    info = _read_state(data_dir)
    if info is None:
        raise LauncherError(f"no Kafka runs from {data_dir} (no {STATE_FILE})")
    node = info.node(node_id)
    if _is_our_broker(node.pid, data_dir):
        raise LauncherError(
            f"Kafka node {node_id} of {data_dir} still runs (pid {node.pid}); kill it first"
        )
    for port in (node.client_port, node.controller_port):
        if port_in_use(port):
            raise LauncherError(
                f"port {port} of Kafka node {node_id} is taken by another process; free it "
                "before restarting the node"
            )
    proc = _spawn(info, node)
    restarted = _replace_pid(node, proc.pid)
    info = ClusterInfo(
        **{
            **_fields(info),
            "nodes": tuple(restarted if n.node_id == node_id else n for n in info.nodes),
        }
    )
    _write_state(info)
    _wait_ready(info, {node_id: proc}, timeout)
    return restarted
