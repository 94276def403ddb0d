"""Shared fixtures: the schemas, a viewing-event factory, settings for unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproc.config import Settings, load_settings
from streamproc.ingest.schemas import SchemaSet, load_schemas
from streamproc.testing import make_viewing_event

__all__ = ["make_viewing_event"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def schemas() -> SchemaSet:
    return load_schemas(REPO / "schemas")


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Default settings, unaffected by STREAMPROC_* variables of the developer's shell."""
    import os

    for name in list(os.environ):
        if name.startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    return load_settings(schemas_dir=REPO / "schemas")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped integration test is a failed set-up, never a pass: the broker is part of it."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (
        report.skipped
        and item.get_closest_marker("integration") is not None
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"integration test skipped, which counts as a failure: {report.longrepr}"
