"""Peak and current RSS and CPU time of processes, read from ``/proc`` (Linux).

- peak RSS: ``VmHWM`` of ``/proc/<pid>/status`` (the resident set's high-water mark);
- current RSS: ``VmRSS`` of the same file (the resident set now);
- CPU time: ``utime + stime`` of ``/proc/<pid>/stat`` (every thread of the process,
  librdkafka's and the JVM's included), in clock ticks.

:class:`CpuMeter` takes a reading of several processes at the start of a window and gives
each one's CPU seconds at its end. The parsing is pure and tested on sample text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLOCK_TICKS",
    "CpuMeter",
    "cpu_seconds",
    "current_rss_bytes",
    "parse_listen_inodes",
    "parse_stat_cpu_ticks",
    "parse_status_kb",
    "parse_system_busy_ticks",
    "peak_rss_bytes",
    "pids_listening_on",
    "system_busy_seconds",
    "total",
]

#: Clock ticks per second of /proc/<pid>/stat's utime and stime.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_status_kb(text: str, field: str = "VmHWM") -> int:
    """The value in kB of ``field`` in the text of ``/proc/<pid>/status``.

    Raises
    ------
    ValueError
        When the field is missing or not a kB figure.

    Examples
    --------
    >>> parse_status_kb("Name:\\tpython\\nVmHWM:\\t  123456 kB\\nVmRSS:\\t 1000 kB\\n")
    123456
    """
    prefix = field + ":"
    for line in text.splitlines():
        if line.startswith(prefix):
            parts = line[len(prefix) :].split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                return int(parts[0])
            raise ValueError(f"{field} is not a kB figure: {line.strip()!r}")
    raise ValueError(f"no {field} line in the status text")


def parse_stat_cpu_ticks(text: str) -> int:
    """``utime + stime`` in clock ticks from the text of ``/proc/<pid>/stat``.

    The second field (the command name) is in parentheses and may itself hold spaces and
    parentheses, so the fields are counted from the *last* closing parenthesis: after it come
    state (field 3), ..., utime (14) and stime (15).

    Raises
    ------
    ValueError
        When the text does not look like a stat line.

    Examples
    --------
    >>> line = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 4 0"
    >>> parse_stat_cpu_ticks(line)
    280
    """
    head, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or not head or len(fields) < 13:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    try:
        return int(fields[11]) + int(fields[12])
    except ValueError as exc:
        raise ValueError(f"utime/stime are not integers in {text[:80]!r}") from exc


def parse_system_busy_ticks(text: str) -> int:
    """Busy clock ticks of all CPUs together from the text of ``/proc/stat`` (its ``cpu`` line).

    Busy = user + nice + system + irq + softirq + steal (everything but idle and iowait).

    Examples
    --------
    >>> parse_system_busy_ticks("cpu  100 5 50 1000 20 1 2 3 0 0\\ncpu0 50 2 25 500 10 0 1 1 0\\n")
    161
    """
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1:9]]
            if len(values) < 8:
                break
            user, nice, system, _idle, _iowait, irq, softirq, steal = values
            return user + nice + system + irq + softirq + steal
    raise ValueError("no aggregate cpu line in the /proc/stat text")


def system_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used so far (None where unknown)."""
    try:
        text = Path("/proc/stat").read_text(encoding="utf-8")
        return parse_system_busy_ticks(text) / CLOCK_TICKS
    except (OSError, ValueError):
        return None


def parse_listen_inodes(text: str, port: int) -> set[int]:
    """Socket inodes listening on TCP ``port``, from the text of ``/proc/net/tcp`` or ``tcp6``.

    Examples
    --------
    >>> table = (
    ...     "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    ...     "   uid  timeout inode\\n"
    ...     "   0: 0100007F:7180 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
    ...     "     0        0 4242 1 0000000000000000 100 0 0 10 0\\n"
    ...     "   1: 0100007F:A504 0100007F:7180 01 00000000:00000000 00:00000000 00000000"
    ...     "     0        0 4343 1 0000000000000000 100 0 0 10 0\\n"
    ... )
    >>> parse_listen_inodes(table, 29056)
    {4242}
    """
    inodes: set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A = TCP_LISTEN
            continue
        _, _, hex_port = fields[1].rpartition(":")
        try:
            if int(hex_port, 16) == port:
                inodes.add(int(fields[9]))
        except ValueError:
            continue
    return inodes


def pids_listening_on(port: int) -> list[int]:
    """Processes of this machine listening on TCP ``port`` (those whose fds can be read)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            inodes |= parse_listen_inodes(Path(table).read_text(encoding="utf-8"), port)
        except OSError:
            continue
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return sorted(found)


def _proc(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_text(encoding="utf-8", errors="replace")


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` has used so far (all threads), or None if it is gone."""
    try:
        return parse_stat_cpu_ticks(_proc(pid, "stat")) / CLOCK_TICKS
    except (OSError, ValueError):
        return None


def peak_rss_bytes(pid: int) -> int | None:
    """Peak resident set size of ``pid`` in bytes (VmHWM), or None if it is gone."""
    try:
        return parse_status_kb(_proc(pid, "status"), "VmHWM") * 1024
    except (OSError, ValueError):
        return None


def current_rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` now in bytes (VmRSS), or None if it is gone."""
    try:
        return parse_status_kb(_proc(pid, "status"), "VmRSS") * 1024
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class CpuReading:
    """CPU seconds of named processes at one moment (None: the process was gone)."""

    at: float  # time.monotonic()
    seconds: Mapping[str, float | None]


#: Key of the whole machine's busy time in a reading.
SYSTEM = "_system"


class CpuMeter:
    """CPU seconds used by named processes between :meth:`start` and :meth:`stop`.

    Parameters
    ----------
    pids
        name -> pid, e.g. ``{"worker-1": 4242, "broker": 4100}``.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._start: CpuReading | None = None

    def read(self) -> CpuReading:
        seconds = {n: cpu_seconds(p) for n, p in self.pids.items()}
        seconds[SYSTEM] = system_busy_seconds()
        return CpuReading(time.monotonic(), seconds)

    def start(self) -> CpuMeter:
        self._start = self.read()
        return self

    def stop(self) -> dict[str, float | None]:
        """name -> CPU seconds used since :meth:`start` (None if unknown at either end).

        Two more entries: ``wall`` (seconds of the window) and ``others`` (CPU seconds the
        rest of the machine used meanwhile: all CPUs' busy time minus the named processes).
        """
        if self._start is None:
            raise RuntimeError("CpuMeter.stop() before start()")
        end = self.read()
        used: dict[str, float | None] = {}
        for name in [*self.pids, SYSTEM]:
            before, after = self._start.seconds.get(name), end.seconds.get(name)
            used[name] = None if before is None or after is None else max(0.0, after - before)
        machine = used.pop(SYSTEM)
        ours = total(used.values())
        used["others"] = None if machine is None or ours is None else max(0.0, machine - ours)
        used["wall"] = end.at - self._start.at
        return used


def total(values: Iterable[float | None]) -> float | None:
    """The sum, or None if any value is unknown (or there is none)."""
    listed = list(values)
    if not listed or any(v is None for v in listed):
        return None
    return float(sum(v for v in listed if v is not None))
