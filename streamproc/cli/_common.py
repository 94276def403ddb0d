"""The root click group and the settings plumbing every command shares."""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import click

from streamproc import __version__
from streamproc.config import Settings, load_settings

__all__ = ["configure_logging", "root", "settings_from"]

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}


def configure_logging(level: str) -> None:
    """Install the CLI's logging configuration (entry points only; the library adds none)."""
    logging.config.dictConfig(LOGGING_CONFIG)
    logging.getLogger("streamproc").setLevel(level.upper())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="streamproc")
@click.option(
    "--bootstrap-servers",
    metavar="HOST:PORT[,...]",
    help="Kafka bootstrap servers [env STREAMPROC_BOOTSTRAP_SERVERS; default 127.0.0.1:9092].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level [env STREAMPROC_LOG_LEVEL; default info].",
)
@click.pass_context
def root(ctx: click.Context, bootstrap_servers: str | None, log_level: str | None) -> None:
    """streamproc: online machine learning on video-viewing event streams over Apache Kafka.

    Start a local Kafka with `streamproc kafka start`, create the topics with
    `streamproc topics create`, run `streamproc worker`, and publish events with
    `streamproc simulate` or `streamproc produce`.
    """
    ctx.ensure_object(dict)
    ctx.obj["overrides"] = {"bootstrap_servers": bootstrap_servers, "log_level": log_level}


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """Settings from the environment, the root flags and ``overrides`` (``None`` = not given)."""
    base = dict(ctx.find_root().obj.get("overrides", {})) if ctx.find_root().obj else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    settings = load_settings(**base)
    configure_logging(settings.log_level)
    return settings
