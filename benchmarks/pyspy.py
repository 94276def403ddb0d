"""A py-spy profile of a worker, grouped into the steps of the hot path.

:class:`PySpyRecorder` attaches ``py-spy record`` to a running worker twice at once: the raw
collapsed stacks, which :func:`classify_stacks` sorts into steps, and a flame graph (SVG) to
look at. The raw recording pauses the worker for each sample (consistent stacks: without
pausing, a good share of the samples come out cut short); the flame graph does not
(``--nonblocking``; two recorders cannot both pause a process). A step's share of the busy
samples, times the worker's measured CPU µs per event, is its cost per event.

A collapsed stack is ``frame;frame;...;frame count`` with the outermost frame first and each
frame ``function (path/file.py:line)``, paths relative to their ``sys.path`` entry.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streamproc.errors import StreamprocError

__all__ = ["PySpyRecorder", "classify_stack", "classify_stacks", "find_py_spy", "parse_collapsed"]

#: Samples in a wait for I/O; py-spy's idle detection does not catch every one of them.
IDLE = "idle (waiting in select/epoll)"


def find_py_spy() -> str | None:
    """The py-spy executable next to this Python (a virtualenv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """``(frames outermost first, samples)`` per line of py-spy's raw output.

    >>> parse_collapsed("main (a.py:1);f (b.py:2) 3\\nmain (a.py:1) 1\\n")
    [(['main (a.py:1)', 'f (b.py:2)'], 3), (['main (a.py:1)'], 1)]
    """
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _file(frame: str) -> str:
    """``path/file.py`` of ``function (path/file.py:line)``."""
    inside = frame.rpartition(" (")[2]
    return inside.rsplit(":", 1)[0]


def _function(frame: str) -> str:
    return frame.rpartition(" (")[0]


def _deepest(files: list[str], prefixes: tuple[str, ...]) -> str | None:
    for path in reversed(files):
        if path.startswith(prefixes):
            return path
    return None


def _task_frames(frames: list[str]) -> list[str]:
    """The frames of the code the event loop is running (below its last ``Handle._run``).

    Every main-thread stack starts with the CLI and ``mode``'s worker, which run the loop:
    only what is below the loop's dispatch tells what the sample is doing.
    """
    for i in range(len(frames) - 1, -1, -1):
        if _function(frames[i]) == "Handle._run" and _file(frames[i]).startswith("asyncio/"):
            return frames[i + 1 :]
    # No dispatch frame: the loop itself (its last frame is asyncio's), or a partial stack
    # (a coroutine resumed by C code, or cut short by a non-blocking read).
    loop = [i for i, f in enumerate(frames) if _file(f).startswith("asyncio/")]
    if loop and loop[-1] == len(frames) - 1:
        return []
    return frames[loop[-1] + 1 :] if loop else frames


_STREAM = ("faust/streams.py", "faust/sensors/", "faust/channels.py", "faust/events.py")
_FETCH = (
    "aiokafka/consumer/",
    "faust/transport/consumer.py",
    "faust/transport/conductor.py",
    "faust/transport/drivers/aiokafka.py",
    "faust/serializers/",
)
_SEND = (
    "faust/topics.py",
    "faust/channels.py",
    "faust/transport/producer.py",
    "faust/transport/drivers/",
    "aiokafka/",
)


def classify_stack(frames: list[str]) -> str:
    """The step one sample belongs to (see the rules in the code; first match wins).

    >>> classify_stack(["_run (asyncio/events.py:80)",
    ...                 "Handle._run (asyncio/events.py:80)",
    ...                 "ingest (agents/ingest.py:84)",
    ...                 "EventDecoder.decode (streamproc/ingest/decode.py:107)"])
    'ingest agent: decode'
    >>> classify_stack(["Handle._run (asyncio/events.py:80)",
    ...                 "Sender._send_produce_req (aiokafka/producer/sender.py:288)"])
    'aiokafka producer: sending batches'
    """
    if frames and (
        _file(frames[-1]).startswith(("selectors.py", "queue.py"))
        or _function(frames[-1]).endswith(".select")
        # an idle thread-pool worker, blocked in its queue's get()
        or (_function(frames[-1]) == "_worker" and _file(frames[-1]).startswith("concurrent/"))
        or (_function(frames[-1]).endswith(".wait") and _file(frames[-1]) == "threading.py")
    ):
        return IDLE
    below = _task_frames(frames)
    files = [_file(f) for f in below]
    functions = [_function(f) for f in below]
    if not below or all(f.startswith("asyncio/") for f in files):
        return "asyncio event loop (scheduling, callbacks)"
    if any(f.startswith("logging/") for f in files):
        return "logging"
    if any(f.startswith("prometheus_client/") for f in files):
        return "Prometheus metrics"
    agent = next((f for f in files if f in ("agents/ingest.py", "agents/model.py")), None)
    if agent is not None:
        stage = "ingest agent" if agent == "agents/ingest.py" else "model agent"
        inner = files[files.index(agent) + 1 :]
        if any("send_changelog" in fn for fn in functions) or any(
            f.startswith("faust/tables/") for f in inner
        ):
            return "ingest agent: de-duplication table changelog (Faust send)"
        if any(f.startswith("streamproc/registry/") for f in inner) or any(
            fn.endswith(".snapshot") for fn in functions
        ):
            return "model agent: snapshots"
        if any(f.startswith(_SEND) for f in inner):
            return f"{stage}: Faust send (topic.send per record)"
        if any(f.startswith("river/") for f in inner):
            return "model agent: River models (predict, learn)"
        deepest = _deepest(inner, ("streamproc/", "fastavro/"))
        if deepest is not None:
            if deepest.startswith("streamproc/features/"):
                return "model agent: features"
            if deepest.startswith("streamproc/learning/"):
                return "model agent: learner bookkeeping (sessions, metrics)"
            if deepest.startswith(("streamproc/ingest/decode.py", "fastavro/")):
                return f"{stage}: decode"
            if deepest.startswith("streamproc/ingest/validate.py"):
                return "ingest agent: validate"
            if deepest.startswith("streamproc/ingest/dedupe.py"):
                return "ingest agent: de-duplicate"
            if deepest.startswith("streamproc/emit/"):
                return f"{stage}: encode"
            return f"{stage}: other streamproc code"
        if any(f.startswith(("faust/", "mode/")) for f in inner):
            return "Faust stream (per-message iteration, acks, sensors)"
        return f"{stage}: agent loop body"
    if any(f.startswith("faust/transport/producer.py") for f in files):
        return "Faust producer buffer"
    if any(f.startswith("aiokafka/producer/") for f in files):
        return "aiokafka producer: sending batches"
    if any(f.startswith("faust/transport/consumer.py") for f in files) and any(
        "commit" in fn.lower() for fn in functions
    ):
        return "Faust offset commits"
    if any(f.startswith(_STREAM) for f in files):
        return "Faust stream (per-message iteration, acks, sensors)"
    if any(f.startswith(_FETCH) for f in files):
        return "Faust consumer: fetch and dispatch"
    if any(f.startswith("mode/threads.py") for f in files):
        return "Faust consumer thread (method queue)"
    if any(f.startswith("aiokafka/") for f in files):
        return "aiokafka client: network I/O"
    if any(f.startswith("streamproc/observe/") for f in files):
        return "lag monitor"
    if any(f in ("agents/drift.py", "streamproc/registry/store.py") for f in files):
        return "control records and snapshots follower (thread)"
    if any(f.startswith(("faust/", "mode/")) for f in files):
        return "Faust services (timers, monitor, other)"
    return "other"


def classify_stacks(stacks: Iterable[tuple[list[str], int]]) -> Counter[str]:
    """Samples per step."""
    counts: Counter[str] = Counter()
    for frames, samples in stacks:
        counts[classify_stack(frames)] += samples
    return counts


@dataclass
class PySpyRecorder:
    """``py-spy record`` on ``pid`` until :meth:`stop`: a flame graph and collapsed stacks."""

    pid: int
    out_dir: Path
    executable: str
    rate: int = 100

    def __post_init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def svg(self) -> Path:
        return self.out_dir / "profile.svg"

    @property
    def raw(self) -> Path:
        return self.out_dir / "profile.collapsed.txt"

    def start(self) -> PySpyRecorder:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log = (self.out_dir / "py-spy.log").open("ab")
        for fmt, path, pause in (("raw", self.raw, True), ("flamegraph", self.svg, False)):
            self._procs.append(
                subprocess.Popen(
                    [
                        self.executable,
                        "record",
                        "--pid",
                        str(self.pid),
                        "--rate",
                        str(self.rate),
                        *([] if pause else ["--nonblocking"]),
                        "--format",
                        fmt,
                        "--output",
                        str(path),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        log.close()
        return self

    def stop(self) -> Counter[str]:
        """Stop recording (SIGINT makes py-spy write its files); samples per step."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if not self.raw.is_file():
            raise StreamprocError(
                f"py-spy wrote no profile; see {self.out_dir / 'py-spy.log'} (it needs ptrace "
                "permission: run as the worker's user, or set kernel.yama.ptrace_scope=0)"
            )
        return classify_stacks(parse_collapsed(self.raw.read_text(encoding="utf-8")))
