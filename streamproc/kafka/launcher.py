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
      cluster.json          kept: cluster id, broker count, security mode (the storage is
                            formatted for them)
      state.json            while running: pids, ports, bootstrap servers, started_at
      node-1/
        server.properties   written at every start (the ports may change between runs)
        log4j2.properties
        server.log          the broker's log
        console.log         the JVM's stdout and stderr (crashes before logging starts)
        data/               log.dirs: partitions and the KRaft metadata log

A data dir started with ``security="sasl_ssl"`` also holds its certificates, passwords and
client settings (``security/``, ``client.env``, ``client.properties``, ``users/``); see
:mod:`~streamproc.kafka.localsecurity`.

Every broker process carries ``-Dstreamproc.kafka.data.dir=DATA_DIR`` on its command line;
:func:`stop_kafka` signals only processes that carry it, so a pid reused by an unrelated
process is never signalled.

The parts live in their own modules, and this one re-exports their public names:
:mod:`~streamproc.kafka.runtime` (version, Java, jars, Kafka's tools),
:mod:`~streamproc.kafka.brokerconfig` (node layout, ports, ``server.properties``),
:mod:`~streamproc.kafka.clusterstate` (``cluster.json``, ``state.json``, status) and
:mod:`~streamproc.kafka.processes` (spawning, recognising and waiting for brokers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamproc.config import Settings
from streamproc.errors import LauncherError
from streamproc.kafka.brokerconfig import (
    HOST,
    SUPPORTED_BROKER_COUNTS,
    NodeSpec,
    check_ports_free,
    find_free_ports,
    node_layout,
    port_in_use,
    render_log4j2_properties,
    render_server_properties,
)
from streamproc.kafka.clusterstate import (
    CLUSTER_FILE,
    STATE_FILE,
    ClusterInfo,
    ClusterState,
    ClusterStatus,
    NodeInfo,
    load_cluster_id,
    read_state,
    recorded_security,
    utc_now,
    write_state,
)
from streamproc.kafka.localsecurity import (
    CLIENT_ENV,
    CLIENT_PROPERTIES,
    SECURITY_DIR,
    USERS_DIR,
    BrokerSecurity,
    SecurityMode,
    format_scram_args,
    prepare_security,
    write_client_files,
)
from streamproc.kafka.processes import (
    MARKER_PROPERTY,
    READY_STREAK,
    find_orphans,
    format_storage,
    is_our_broker,
    probe_config,
    spawn_node,
    wait_gone,
    wait_ready,
)
from streamproc.kafka.runtime import (
    COMPLETE_MARKER,
    LOG_TAIL_LINES,
    MIN_JAVA,
    JavaInfo,
    Progress,
    check_java,
    fetch_kafka_jars,
    kafka_version,
    libs_version,
    parse_java_version,
    pom_path,
    run_kafka_tool,
    say,
)
from streamproc.kafka.secretfiles import write_private

# Every public name this module had before it was split into the submodules above (the
# constants and Progress were public attributes then, though not listed here).
__all__ = [
    "CLUSTER_FILE",
    "COMPLETE_MARKER",
    "HOST",
    "LOG_TAIL_LINES",
    "MARKER_PROPERTY",
    "MIN_JAVA",
    "READY_STREAK",
    "STATE_FILE",
    "SUPPORTED_BROKER_COUNTS",
    "ClusterInfo",
    "ClusterState",
    "ClusterStatus",
    "JavaInfo",
    "NodeInfo",
    "NodeSpec",
    "Progress",
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


def _data_dir(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve()


def _heap(brokers: int) -> tuple[str, ...]:
    return ("-Xmx512m", "-Xms256m") if brokers == 1 else ("-Xmx384m", "-Xms128m")


def _node_dir(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}"


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
    security: SecurityMode | None = None,
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
    security
        ``"plaintext"``, or ``"sasl_ssl"``: TLS, SCRAM/PLAIN logins and ACLs, with a CA,
        passwords and the admin's client settings made in ``data_dir``
        (:mod:`~streamproc.kafka.localsecurity`). Default: what the data dir was made with,
        plaintext for a new one.

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
    mode: SecurityMode = security or recorded_security(data_dir) or "plaintext"
    current = read_state(data_dir)
    if current is not None:
        alive = [n.node_id for n in current.nodes if is_our_broker(n.pid, data_dir)]
        if len(alive) == len(current.nodes):
            if len(current.nodes) != brokers or current.security != mode:
                raise LauncherError(
                    f"a {len(current.nodes)}-broker {current.security} Kafka from {data_dir} is "
                    f"already running at {current.bootstrap_servers}; stop it first "
                    f"(`streamproc kafka stop --data-dir {data_dir}`)"
                )
            say(progress, f"Kafka from {data_dir} is already running")
            return ClusterInfo(**{**_fields(current), "already_running": True})
        if alive:
            raise LauncherError(
                f"the Kafka from {data_dir} is partly running (node(s) "
                f"{', '.join(map(str, alive))} of {len(current.nodes)} alive); restart the dead "
                f"ones or stop all with `streamproc kafka stop --data-dir {data_dir}`"
            )
        logger.info("removing the stale state file of %s (no node is running)", data_dir)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
    orphans = find_orphans(data_dir)
    if orphans:
        raise LauncherError(
            f"Kafka process(es) {', '.join(map(str, orphans))} still run from {data_dir} without "
            f"a state file; stop them with `streamproc kafka stop --data-dir {data_dir}`"
        )
    check_ports_free(nodes)
    java = check_java()
    libs = fetch_kafka_jars(settings, progress=progress)
    cluster_id = load_cluster_id(data_dir, brokers, mode)
    version = libs_version(libs)
    secured: BrokerSecurity | None = None
    if mode == "sasl_ssl":
        say(progress, "preparing TLS certificates and SASL credentials ...")
        secured = prepare_security(data_dir)

    node_infos = []
    unformatted: list[Path] = []
    for spec in nodes:
        node_dir = _node_dir(data_dir, spec.node_id)
        (node_dir / "data").mkdir(parents=True, exist_ok=True)
        config = node_dir / "server.properties"
        # 0600: a secured node's properties hold its passwords.
        write_private(config, render_server_properties(spec, nodes, node_dir, secured))
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
        say(progress, f"formatting the storage of {len(unformatted)} node(s) ...")
        format_storage(
            java, libs, unformatted, cluster_id, format_scram_args(secured) if secured else ()
        )
    bootstrap_servers = ",".join(f"{n.host}:{n.client_port}" for n in nodes)
    if secured is not None:
        write_client_files(secured, bootstrap_servers)
    info = ClusterInfo(
        data_dir=data_dir,
        bootstrap_servers=bootstrap_servers,
        cluster_id=cluster_id,
        kafka_version=version,
        started_at=utc_now(),
        java=java.path,
        libs_dir=libs,
        heap=_heap(brokers),
        exit_with_parent=exit_with_parent,
        nodes=tuple(node_infos),
        security=mode,
    )
    say(progress, f"starting Apache Kafka {version}: {brokers} broker(s) from {data_dir} ...")
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        started = []
        for node in info.nodes:
            proc = spawn_node(info, node)
            procs[node.node_id] = proc
            started.append(_replace_pid(node, proc.pid))
            info = ClusterInfo(
                **{**_fields(info), "nodes": tuple(started) + info.nodes[len(started) :]}
            )
            write_state(info)
        wait_ready(info, procs, timeout)
    except BaseException:
        for proc in procs.values():
            with contextlib.suppress(OSError):
                proc.kill()
        wait_gone([p.pid for p in procs.values()], data_dir, 10.0)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    say(progress, f"Kafka ready at {info.bootstrap_servers}")
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
    state = read_state(data_dir)
    candidates = set(find_orphans(data_dir))
    if state is not None:
        candidates.update(n.pid for n in state.nodes)
    pids = sorted(pid for pid in candidates if is_our_broker(pid, data_dir))
    for pid in pids:
        logger.info("stopping Kafka pid %d (SIGTERM)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    survivors = wait_gone(pids, data_dir, timeout)
    for pid in survivors:
        logger.warning("Kafka pid %d ignored SIGTERM for %g s; sending SIGKILL", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    still = wait_gone(survivors, data_dir, 10.0)
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
        if entry.is_dir() and (
            re.fullmatch(r"node-\d+", entry.name) or entry.name in (SECURITY_DIR, USERS_DIR)
        ):
            shutil.rmtree(entry)
        elif entry.name in (
            CLUSTER_FILE,
            STATE_FILE,
            STATE_FILE + ".tmp",
            CLIENT_ENV,
            CLIENT_PROPERTIES,
        ):
            entry.unlink()
    with contextlib.suppress(OSError):
        data_dir.rmdir()


def kafka_status(data_dir: Path, *, probe_timeout: float = 3.0) -> ClusterStatus:
    """The state of the cluster of ``data_dir``: which nodes live, how many brokers answer."""
    data_dir = _data_dir(data_dir)
    info = read_state(data_dir)
    if info is None:
        return ClusterStatus(data_dir, None, {}, None)
    alive = {n.node_id: is_our_broker(n.pid, data_dir) for n in info.nodes}
    answering: int | None = None
    if any(alive.values()):
        admin = AdminClient(probe_config(info))
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
    info = read_state(data_dir)
    if info is None:
        raise LauncherError(f"no Kafka runs from {data_dir} (no {STATE_FILE})")
    node = info.node(node_id)
    if not is_our_broker(node.pid, data_dir):
        raise LauncherError(f"Kafka node {node_id} of {data_dir} (pid {node.pid}) is not running")
    os.kill(node.pid, sig)
    if sig in (signal.SIGKILL, signal.SIGTERM) and wait_gone([node.pid], data_dir, timeout):
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
    info = read_state(data_dir)
    if info is None:
        raise LauncherError(f"no Kafka runs from {data_dir} (no {STATE_FILE})")
    node = info.node(node_id)
    if is_our_broker(node.pid, data_dir):
        raise LauncherError(
            f"Kafka node {node_id} of {data_dir} still runs (pid {node.pid}); kill it first"
        )
    for port in (node.client_port, node.controller_port):
        if port_in_use(port):
            raise LauncherError(
                f"port {port} of Kafka node {node_id} is taken by another process; free it "
                "before restarting the node"
            )
    proc = spawn_node(info, node)
    restarted = _replace_pid(node, proc.pid)
    info = ClusterInfo(
        **{
            **_fields(info),
            "nodes": tuple(restarted if n.node_id == node_id else n for n in info.nodes),
        }
    )
    write_state(info)
    wait_ready(info, {node_id: proc}, timeout)
    return restarted
