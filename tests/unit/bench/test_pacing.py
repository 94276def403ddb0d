"""The open-loop rate limiter, on a fake clock."""

from __future__ import annotations

import pytest

from benchmarks.pacing import Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_sends_are_spread_evenly() -> None:
    t = FakeTime()
    pacer = Pacer(200.0, clock=t.clock, sleep=t.sleep)
    send_times = []
    for _ in range(5):
        pacer.wait()
        send_times.append(t.now)
    assert send_times == pytest.approx([100.0, 100.005, 100.010, 100.015, 100.020])
    assert pacer.sent == 5
    assert pacer.elapsed() == pytest.approx(0.020)


def test_a_late_sender_catches_up_without_sleeping() -> None:
    t = FakeTime()
    pacer = Pacer(10.0, clock=t.clock, sleep=t.sleep)
    pacer.wait()  # send 0 at 100.0
    t.now += 0.35  # a stall: sends 1..3 are due at 100.1, 100.2, 100.3
    assert pacer.wait() == pytest.approx(0.25)
    assert pacer.wait() == pytest.approx(0.15)
    assert pacer.wait() == pytest.approx(0.05)
    assert t.sleeps == []
    assert pacer.wait() == 0.0  # send 4 is due at 100.4: on schedule again
    assert t.sleeps == [pytest.approx(0.05)]
    assert pacer.max_behind_s == pytest.approx(0.25)


def test_offered_rate_over_a_run() -> None:
    t = FakeTime()
    pacer = Pacer(1000.0, clock=t.clock, sleep=t.sleep)
    for _ in range(3001):
        pacer.wait()
        t.now += 0.0002  # the send itself takes time
    assert pacer.due(3000) - pacer.due(0) == pytest.approx(3.0)
    assert pacer.sent / (pacer.due(3000) - pacer.due(0)) == pytest.approx(1000.0, rel=1e-3)


@pytest.mark.parametrize("rate", [0.0, -5.0, float("nan")])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        Pacer(rate)


def test_due_before_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        Pacer(5.0).due(0)
