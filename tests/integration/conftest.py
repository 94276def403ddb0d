"""Integration fixtures: a real Apache Kafka started by the project's launcher.

- ``kafka`` (session): one local broker on free ports in a temporary data dir, the jars from
  the normal cache. With ``STREAMPROC_TEST_BOOTSTRAP_SERVERS`` set, that cluster is used and
  nothing is started. If Kafka cannot start, the fixture errors with the launcher's message:
  it never skips.
- ``kafka3`` (session, started only when a test asks for it): three local brokers, always
  local because fault tests kill and restart its nodes.
- ``make_settings(**overrides)``: Settings pointing at ``kafka`` with a per-test topic prefix
  (``t<uuid8>-viewing-events``, ...) and app id, so tests never share topics or groups.
- ``cli``: a ``CliRunner`` that restores the logging set-up the CLI installs.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streamproc.config import Settings, load_settings
from streamproc.errors import KafkaError
from streamproc.kafka.launcher import ClusterInfo, find_free_ports, start_kafka, stop_kafka

REPO = Path(__file__).resolve().parents[2]
EXTERNAL_ENV = "STREAMPROC_TEST_BOOTSTRAP_SERVERS"
TOPIC_FIELDS = [name for name in Settings.model_fields if name.startswith("topic_")]


@dataclass(frozen=True)
class KafkaCluster:
    """A cluster the tests run against.

    Attributes
    ----------
    bootstrap_servers
        ``host:port[,...]``.
    data_dir
        The launcher's data dir; None for an external cluster.
    info
        What the launcher started; None for an external cluster.
    settings
        The settings the launcher used (jar cache, KAFKA_HOME).
    """

    bootstrap_servers: str
    data_dir: Path | None
    info: ClusterInfo | None
    settings: Settings

    @property
    def external(self) -> bool:
        return self.info is None


def _launcher_settings() -> Settings:
    # The jar cache and KAFKA_HOME come from the environment as usual, so the cache is shared
    # with `streamproc kafka fetch`; ports and data dir are chosen per session below.
    return load_settings()


def _local_cluster(
    tmp_path_factory: pytest.TempPathFactory, brokers: int
) -> Iterator[KafkaCluster]:
    settings = _launcher_settings()
    data_dir = tmp_path_factory.mktemp(f"kafka{brokers}")
    port = find_free_ports(2 * brokers)
    try:
        info = start_kafka(
            settings,
            brokers=brokers,
            port=port,
            data_dir=data_dir,
            timeout=120,
            exit_with_parent=True,  # a killed test run leaves no broker behind
        )
    except KafkaError as exc:
        stop_kafka(data_dir)
        pytest.fail(
            f"the local Kafka ({brokers} broker(s)) could not start: {type(exc).__name__}: {exc}",
            pytrace=False,
        )
    try:
        yield KafkaCluster(info.bootstrap_servers, info.data_dir, info, settings)
    finally:
        stop_kafka(info.data_dir)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One broker for the session (or the cluster of ``STREAMPROC_TEST_BOOTSTRAP_SERVERS``)."""
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        yield KafkaCluster(external, None, None, _launcher_settings())
        return
    yield from _local_cluster(tmp_path_factory, brokers=1)


@pytest.fixture(scope="session")
def kafka3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three local brokers (RF-3 topics, node kills); started only if a test requests it."""
    yield from _local_cluster(tmp_path_factory, brokers=3)


class SettingsFactory:
    """``make_settings(**overrides)``: Settings for one test, topics prefixed ``t<uuid8>-``."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self._request = request

    def __call__(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            name: f"{self.prefix}-{Settings.model_fields[name].default}" for name in TOPIC_FIELDS
        }
        values["app_id"] = f"{self.prefix}-streamproc"
        values["schemas_dir"] = REPO / "schemas"
        if "bootstrap_servers" not in overrides:
            # Only now is the session broker started: tests on kafka3 never need it.
            cluster: KafkaCluster = self._request.getfixturevalue("kafka")
            values["bootstrap_servers"] = cluster.bootstrap_servers
            values["kafka_cache_dir"] = cluster.settings.kafka_cache_dir
            values["kafka_home"] = cluster.settings.kafka_home
        values.update(overrides)
        return load_settings(**values)


@pytest.fixture
def make_settings(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> SettingsFactory:
    """A factory of Settings unaffected by the developer's STREAMPROC_* variables."""
    for name in list(os.environ):
        if name.startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    return SettingsFactory(request)


@pytest.fixture
def cli() -> Iterator[CliRunner]:
    """A CliRunner; the logging the CLI installs (a handler on the runner's stderr) is undone."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ours = logging.getLogger("streamproc")
    our_level = ours.level
    yield CliRunner()
    root.handlers[:] = handlers
    root.setLevel(level)
    ours.setLevel(our_level)


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Any]:
    """``spawn_worker(settings, name)`` starts a worker process; every one is reaped at teardown."""
    from streamproc.workers import WorkerProcess

    started: list[WorkerProcess] = []

    def spawn(settings: Settings, name: str = "worker", **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{name}.log", extra_env).start()
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()
