"""Where Shoal keeps things, per platform conventions (platformdirs), overridable by settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platformdirs import PlatformDirs

_DIRS = PlatformDirs("shoal", appauthor=False)


def config_file() -> Path:
    """The user's config.toml; `SHOAL_CONFIG` points elsewhere (tests, portable installs)."""
    override = os.environ.get("SHOAL_CONFIG")
    return Path(override).expanduser() if override else Path(_DIRS.user_config_dir) / "config.toml"


def default_data_dir() -> Path:
    return Path(_DIRS.user_data_dir)


def default_workspace() -> Path:
    return Path.home() / "Shoal"


def expand(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.expandvars(os.fspath(path))).expanduser()


def resources_dir() -> Path:
    """The `resources` folder: next to the packages in a checkout, under `sys._MEIPASS` in a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / "resources" if bundle else Path(__file__).resolve().parents[1] / "resources"


def bundled_embedding_model() -> Path:
    """Where a bundle (the slim flavour) ships all-MiniLM-L6-v2 as GGUF, for memory without torch."""
    return resources_dir() / "models" / "all-MiniLM-L6-v2.gguf"
