"""The broker processes of a local cluster: format, spawn, recognise, wait for and reap them.

Every broker process carries ``-Dstreamproc.kafka.data.dir=DATA_DIR`` on its command line;
:func:`is_our_broker` checks for it, so a pid reused by an unrelated process is never taken
for a broker (nor signalled by the launcher).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamproc.errors import LauncherError
from streamproc.kafka.clients import quiet_client_logger
from streamproc.kafka.clusterstate import ClusterInfo, NodeInfo, utc_now
from streamproc.kafka.localsecurity import admin_client_config
from streamproc.kafka.runtime import LOG_TAIL_LINES, JavaInfo, tail
from streamproc.kafka.secretfiles import write_private

__all__ = [
    "MARKER_PROPERTY",
    "READY_STREAK",
    "find_orphans",
    "format_storage",
    "is_our_broker",
    "log_tail",
    "probe_config",
    "spawn_node",
    "wait_gone",
    "wait_ready",
]

logger = logging.getLogger(__name__)

MARKER_PROPERTY = "-Dstreamproc.kafka.data.dir="
READY_STREAK = 3

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


def is_our_broker(pid: int, data_dir: Path) -> bool:
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


def find_orphans(data_dir: Path) -> list[int]:
    """Pids of brokers of ``data_dir`` that no state file lists (Linux only)."""
    if not Path("/proc/self").exists():
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_our_broker(int(entry.name), data_dir):
            pids.append(int(entry.name))
    return pids


def wait_gone(pids: Sequence[int], data_dir: Path, timeout: float) -> list[int]:
    """Wait until none of ``pids`` is a broker of ``data_dir``; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive:
        alive = [pid for pid in alive if is_our_broker(pid, data_dir)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for pid in pids:
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            del _CHILDREN[pid]
    return alive


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


def spawn_node(info: ClusterInfo, node: NodeInfo) -> subprocess.Popen[bytes]:
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
        console.write(f"\n--- started by streamproc at {utc_now()}\n".encode())
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


def log_tail(node: NodeInfo, lines: int = LOG_TAIL_LINES) -> str:
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
            parts.append(f"--- {path}:\n{tail(body, lines)}")
    return "\n".join(parts) or f"(no log output in {node.log_file.parent})"


def format_storage(
    java: JavaInfo,
    libs: Path,
    configs: Sequence[Path],
    cluster_id: str,
    extra_args: Sequence[str] = (),
) -> None:
    """Format the storage of each node (in parallel: each run is a JVM start).

    The tool's arguments go through a Java argument file (``java @file``, mode 0600, removed
    afterwards), so ``extra_args`` such as ``--add-scram`` with a password never show in the
    process list.
    """
    runs = []
    for config in configs:
        tool_args = [
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(config),
            "--ignore-formatted",
            *extra_args,
        ]
        argfile = config.parent / ".format.args"
        write_private(argfile, "\n".join(_argfile_quote(a) for a in tool_args) + "\n")
        command = [
            java.path,
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={config.parent / 'log4j2.properties'}",
            "-cp",
            f"{libs}{os.sep}*",
            f"@{argfile}",
        ]
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        runs.append((config, argfile, proc))
    failures = []
    for config, argfile, proc in runs:
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        finally:
            argfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            text = output.decode(errors="replace")
            failures.append(f"{config.parent} (exit code {proc.returncode}):\n{tail(text, 20)}")
    if failures:
        raise LauncherError(
            "formatting the Kafka storage failed for "
            + "\n".join(failures)
            + "\nIf the data dir is from another Kafka version or cluster, use another "
            "--data-dir or run `streamproc kafka stop --wipe`"
        )


def _argfile_quote(arg: str) -> str:
    # A Java argument file splits on white space; quotes keep an argument whole.
    if arg and not any(c in arg for c in " \t\"'\\#"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def probe_config(info: ClusterInfo) -> dict[str, Any]:
    """Client properties with which the launcher asks its own cluster whether it is up.

    Not :func:`~streamproc.kafka.clients.client_config`: the launcher does not use the
    settings' credentials but the admin's of a secured data dir (``client.env``).
    """
    config: dict[str, Any] = {"bootstrap.servers": info.bootstrap_servers}
    if info.security == "sasl_ssl":
        config.update(admin_client_config(info.data_dir))
        config["bootstrap.servers"] = info.bootstrap_servers
    config["logger"] = quiet_client_logger()
    return config


def wait_ready(
    info: ClusterInfo, procs: Mapping[int, subprocess.Popen[bytes]], timeout: float
) -> None:
    """Wait until the metadata lists every node; raise with the log tail if one dies."""
    admin = AdminClient(probe_config(info))
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
                    f"starting; last lines of its logs:\n{log_tail(node)}"
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
    tails = "\n".join(log_tail(info.node(i)) for i in missing)
    raise LauncherError(
        f"Kafka at {info.bootstrap_servers} was not ready within {timeout:g} s (node(s) "
        f"{', '.join(map(str, missing))} not in the cluster metadata); raise --timeout on a slow "
        f"machine. Last lines of the logs:\n{tails}"
    )
