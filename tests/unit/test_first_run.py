"""The terminal's first-run model picker."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import first_run
from core.settings import load_settings

GGUF = b"GGUF\x03\x00\x00\x00" + b"\x00" * 32


def test_choosing_a_found_model_saves_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "small.gguf").write_bytes(GGUF)
    loaded = load_settings(tmp_path / "cfg" / "config.toml")
    assert first_run.needs_model(loaded.settings)
    monkeypatch.setattr("builtins.input", lambda prompt: "1")
    assert first_run.pick_model(loaded)
    again = load_settings(tmp_path / "cfg" / "config.toml")
    assert again.settings.model.path == str(tmp_path / "models" / "small.gguf")
    assert not first_run.needs_model(again.settings)


def test_skipping_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "small.gguf").write_bytes(GGUF)
    loaded = load_settings(tmp_path / "config.toml")
    monkeypatch.setattr("builtins.input", lambda prompt: "")
    assert not first_run.pick_model(loaded)
    assert not (tmp_path / "config.toml").exists()
