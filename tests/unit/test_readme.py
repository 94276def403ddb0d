"""README.md keeps the two commands and documents every setting."""

from __future__ import annotations

from pathlib import Path

from streamproc.config import Settings, env_var_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_two_commands() -> None:
    assert "make demo" in README and "make test" in README


def test_every_setting_is_documented() -> None:
    missing = [
        env_var_name(name)
        for name in Settings.model_fields
        if name != "kafka_home" and f"`{env_var_name(name)}`" not in README
    ]
    assert not missing, f"README.md does not document {missing}; run python -m streamproc.config"
    assert "`KAFKA_HOME`" in README


def test_every_command_is_documented() -> None:
    from streamproc.cli import root

    undocumented = [name for name in root.commands if f"streamproc {name}" not in README]
    assert not undocumented
