"""The ``streamproc`` command line.

Each command parses its flags into :class:`~streamproc.config.Settings` (flags override the
``STREAMPROC_*`` env vars) and calls one library function. ``main`` catches
:class:`~streamproc.errors.StreamprocError` once and prints ``TypeName: message`` to stderr.
Exit codes: 0 ok, 1 error, 2 usage, 3 could not start (Kafka or Java unavailable).
"""

from __future__ import annotations

import sys

import click

from streamproc.cli._common import root
from streamproc.errors import BrokerUnavailableError, LauncherError, StreamprocError

__all__ = ["main", "root"]


#: Command modules, each defining ``command``; listed here so that `--help` shows them all.
_COMMANDS = (
    "audit",
    "bench",
    "consume",
    "demo",
    "dlq",
    "drift_report",
    "evaluate",
    "kafka",
    "lag",
    "models",
    "produce",
    "replay",
    "schemas",
    "simulate",
    "topics",
    "worker",
)


def _register() -> None:
    # Imported here so that `streamproc --help` stays quick and each command module
    # owns its own flags.
    import importlib

    for name in _COMMANDS:
        module = importlib.import_module(f"streamproc.cli.{name}")
        root.add_command(module.command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``streamproc`` console script."""
    try:
        code = root.main(args=argv, prog_name="streamproc", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (BrokerUnavailableError, LauncherError) as exc:
        click.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(3)
    except StreamprocError as exc:
        click.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    # Without standalone mode, click returns the code of ctx.exit(code) instead of exiting.
    if isinstance(code, int) and code:
        sys.exit(code)
