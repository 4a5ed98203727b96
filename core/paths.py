"""Where Shoal keeps things, per platform conventions (platformdirs), overridable by settings."""

from __future__ import annotations

import os
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
