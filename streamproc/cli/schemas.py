"""Placeholder: the `schemas` command is being written."""

from __future__ import annotations

import click


@click.command("schemas")
def command() -> None:
    """(not yet available)"""
    raise click.ClickException("not yet available")
