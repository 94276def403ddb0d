"""Worker processes started from Python (the demo, the benchmarks and the fault tests).

A worker is ``python -m streamproc worker`` in its own process group, with the settings
passed as ``STREAMPROC_*`` environment variables and its output in a log file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from streamproc.config import Settings
from streamproc.errors import KafkaError, StreamprocError
from streamproc.kafka.lag import consumer_lag

__all__ = ["WorkerProcess", "wait_for_catch_up"]


class WorkerProcess:
    """One ``streamproc worker`` process.

    Parameters
    ----------
    settings
        Passed to the worker as environment variables.
    log_path
        The worker's stdout and stderr.
    extra_env
        More environment variables (e.g. a metrics port per worker).
    """

    def __init__(
        self, settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.log_path = Path(log_path)
        self.extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
        env.update(self.settings.to_env())
        env.update(self.extra_env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "streamproc", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no commit, no snapshot, no flush."""
        if self._proc is not None and self.alive():
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (the worker commits, snapshots and flushes); SIGKILL after timeout."""
        if self._proc is None:
            return None
        if self.alive():
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(10)
        return self._proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> WorkerProcess:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_catch_up(
    settings: Settings,
    topics: list[str],
    *,
    timeout: float = 180.0,
    workers: list[WorkerProcess] | None = None,
    group: str | None = None,
    progress: Callable[[int, float], None] | None = None,
    progress_every_s: float = 15.0,
) -> float:
    """Wait until the worker group's lag on ``topics`` is 0; return the seconds it took.

    ``progress(records behind, seconds waited)`` is called every ``progress_every_s``.

    Raises
    ------
    StreamprocError
        On timeout, or when a worker in ``workers`` died (with the tail of its log).
    """
    started = last = time.monotonic()
    group = group or settings.app_id
    while True:
        for worker in workers or []:
            if not worker.alive():
                raise StreamprocError(
                    f"worker {worker.pid} exited ({worker.log_path}):\n{worker.log_tail()}"
                )
        try:
            rows = consumer_lag(settings, group, topics=topics, with_seconds=False, timeout=5.0)
        except KafkaError:
            rows = []  # e.g. the group coordinator is still loading: ask again
        if rows and all(r.lag == 0 for r in rows):
            return time.monotonic() - started
        now = time.monotonic()
        if now - started > timeout:
            behind = sum(r.lag for r in rows)
            raise StreamprocError(
                f"group {group} still {behind} records behind on {topics} after {timeout:.0f} s"
            )
        if progress is not None and now - last >= progress_every_s:
            progress(sum(r.lag for r in rows), now - started)
            last = now
        time.sleep(0.5)
