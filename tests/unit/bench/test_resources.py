"""Peak RSS, CPU time and listening sockets parsed from /proc text."""

from __future__ import annotations

import os

import pytest

from benchmarks import resources
from benchmarks.resources import (
    CpuMeter,
    current_rss_bytes,
    parse_listen_inodes,
    parse_stat_cpu_ticks,
    parse_status_kb,
    parse_system_busy_ticks,
    peak_rss_bytes,
    total,
)

STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t 1487312 kB
VmHWM:\t  180072 kB
VmRSS:\t  175000 kB
Threads:\t7
"""

# A real-looking stat line whose command name holds spaces and parentheses.
STAT = (
    "4242 (streamproc (worker) 1) R 1 4242 4242 0 -1 4194560 53021 0 12 0 "
    "1234 567 0 0 20 0 7 0 998877 1523081216 45018 18446744073709551615"
)


def test_status_fields() -> None:
    assert parse_status_kb(STATUS) == 180072
    assert parse_status_kb(STATUS, "VmRSS") == 175000
    with pytest.raises(ValueError, match="no VmSwap line"):
        parse_status_kb(STATUS, "VmSwap")
    with pytest.raises(ValueError, match="not a kB figure"):
        parse_status_kb("VmHWM:\t12 MB\n")


def test_rss_of_a_live_process_and_of_a_gone_one() -> None:
    now, peak = current_rss_bytes(os.getpid()), peak_rss_bytes(os.getpid())
    assert now is not None and peak is not None
    assert 0 < now <= peak
    assert now % 1024 == 0
    assert current_rss_bytes(2**22 + 1) is None  # above the kernel's largest pid


def test_stat_cpu_ticks_count_from_the_last_parenthesis() -> None:
    assert parse_stat_cpu_ticks(STAT) == 1234 + 567
    with pytest.raises(ValueError, match="not a /proc/<pid>/stat line"):
        parse_stat_cpu_ticks("4242 python R 1")
    with pytest.raises(ValueError, match="not integers"):
        parse_stat_cpu_ticks(STAT.replace(" 1234 ", " x "))


def test_system_busy_ticks() -> None:
    text = "cpu  10 1 5 100 7 2 3 4 0 0\ncpu0 5 0 2 50 3 1 1 2 0 0\nintr 1\n"
    assert parse_system_busy_ticks(text) == 10 + 1 + 5 + 2 + 3 + 4
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        parse_system_busy_ticks("cpu0 5 0 2 50 3 1 1 2 0 0\n")


def test_listening_sockets_only() -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
    rows = [
        "   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:0 0 0 0 111 1 0\n",
        "   1: 0100007F:2384 0100007F:D431 01 00000000:00000000 00:0 0 0 0 222 1 0\n",
        "   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:0 0 0 0 333 1 0\n",
    ]
    assert parse_listen_inodes(header + "".join(rows), 0x2384) == {111}
    assert parse_listen_inodes(header + "".join(rows), 8080) == {333}
    assert parse_listen_inodes(header, 9092) == set()


def test_cpu_meter_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    readings: list[dict[object, float | None]] = [
        {1: 10.0, 2: 5.0, "sys": 100.0},  # start
        {1: 12.5, 2: None, "sys": 104.0},  # end: process 2 is gone
    ]
    current: dict[object, float | None] = {}

    def advance() -> None:
        current.clear()
        current.update(readings.pop(0))

    monkeypatch.setattr(resources, "cpu_seconds", lambda pid: current[pid])
    monkeypatch.setattr(resources, "system_busy_seconds", lambda: current["sys"])
    meter = CpuMeter({"worker-1": 1, "worker-2": 2})
    advance()
    meter.start()
    advance()
    used = meter.stop()
    assert used["worker-1"] == pytest.approx(2.5)
    assert used["worker-2"] is None
    assert used["others"] is None  # unknown while one of ours is unknown
    assert used["wall"] is not None and used["wall"] >= 0


def test_cpu_meter_others(monkeypatch: pytest.MonkeyPatch) -> None:
    values = iter([1.0, 50.0, 3.0, 55.0])  # worker, machine at start; worker, machine at end
    monkeypatch.setattr(resources, "cpu_seconds", lambda pid: next(values))
    monkeypatch.setattr(resources, "system_busy_seconds", lambda: next(values))
    meter = CpuMeter({"worker-1": 7}).start()
    used = meter.stop()
    assert used["worker-1"] == pytest.approx(2.0)
    assert used["others"] == pytest.approx(3.0)  # 5 s busy in all, 2 of them ours


def test_cpu_meter_needs_a_start() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        CpuMeter({}).stop()


def test_total() -> None:
    assert total([1.0, 2.5]) == 3.5
    assert total([1.0, None]) is None
    assert total([]) is None
