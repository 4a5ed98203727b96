"""Shared test setup: every test runs isolated from the user's config, keyring and data."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

# Set before anything imports llama_cpp / keyring.
os.environ["OMP_WAIT_POLICY"] = "passive"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["QT_QPA_PLATFORM"] = "offscreen"  # real widgets, no screen needed
os.environ["PYTHON_KEYRING_BACKEND"] = "tests.fixtures.memory_keyring.MemoryKeyring"
for _name in [n for n in os.environ if n.startswith("SHOAL_")]:
    del os.environ[_name]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Qt tests get a qasync loop (Qt events run while they await); every other test a plain asyncio loop.
    Said for every test: pytest-asyncio caches the factory per session, so a Qt loop must never leak."""
    if item.nodeid.startswith("tests/ui/"):
        from tests.ui.conftest import qasync_loop

        return {"qasync": qasync_loop}
    return {"asyncio": asyncio.new_event_loop}


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
