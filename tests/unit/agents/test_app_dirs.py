"""The worker app leaves no ``<app id>-data`` tree behind in the working directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.app import create_app
from streamproc.config import Settings


def test_first_start_creates_no_data_directory(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_app(settings.model_copy(update={"agents": "ingest"}))
    asyncio.run(app.on_first_start())
    assert list(tmp_path.iterdir()) == []
