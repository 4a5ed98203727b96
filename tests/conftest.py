"""Shared test setup: every test runs isolated from the user's config, keyring and data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports llama_cpp / keyring.
os.environ["OMP_WAIT_POLICY"] = "passive"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["QT_QPA_PLATFORM"] = "offscreen"  # real widgets, no screen needed
os.environ["PYTHON_KEYRING_BACKEND"] = "tests.fixtures.memory_keyring.MemoryKeyring"
for _name in [n for n in os.environ if n.startswith("SHOAL_")]:
    del os.environ[_name]


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real config file, data folder or keyring."""
    monkeypatch.setenv("SHOAL_CONFIG", str(tmp_path / "config" / "config.toml"))
    monkeypatch.setenv("SHOAL_PATHS__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SHOAL_TOOLS__WORKSPACE", str(tmp_path / "workspace"))
    from tests.fixtures.memory_keyring import MemoryKeyring

    MemoryKeyring.store.clear()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir(exist_ok=True)
    return path
