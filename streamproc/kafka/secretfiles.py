"""Files that hold secrets: written owner-only (mode 0600), env files read and written.

The local secured cluster keeps its passwords and keystore in files of its data dir, and
hands clients an env file (``client.env``) with ``STREAMPROC_*`` lines. A file that holds a
secret is never readable by other users, not even for a moment: it is created with mode
0600 before anything is written to it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

__all__ = ["read_env_file", "render_env_file", "write_private"]


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data``, readable and writable by the owner only (0600).

    Written to a temporary file created 0600 and renamed over ``path``, so a reader never
    sees a partial file and an older, more open file mode is not kept.
    """
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def render_env_file(values: Mapping[str, str], *, header: str = "") -> str:
    """``NAME=value`` lines a POSIX shell can source (``set -a; . FILE; set +a``).

    Examples
    --------
    >>> print(render_env_file({"A": "x y", "B": "plain"}), end="")
    A='x y'
    B=plain
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of an env file written by :func:`render_env_file`.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "client.env"
    ...     _ = p.write_text(render_env_file({"A": "x y"}, header="comment"))
    ...     read_env_file(p)
    {'A': 'x y'}
    """
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, raw = line.partition("=")
        parts = shlex.split(raw)
        values[name.strip()] = parts[0] if parts else ""
    return values
