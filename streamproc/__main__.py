"""``python -m streamproc``: the same as the ``streamproc`` command."""

from __future__ import annotations

from streamproc.cli import main

if __name__ == "__main__":
    main()
