"""Placeholder: the `topics` command is being written."""

from __future__ import annotations

import click


@click.command("topics")
def command() -> None:
    """(not yet available)"""
    raise click.ClickException("not yet available")
