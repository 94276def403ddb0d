"""Placeholder: the `worker` command is being written."""

from __future__ import annotations

import click


@click.command("worker")
def command() -> None:
    """(not yet available)"""
    raise click.ClickException("not yet available")
