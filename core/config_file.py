"""Changing config.toml safely: validate first, then replace the file atomically; never a secret.

Shared by `shoal config set`, the first-run model picker and (later) the desktop settings dialog.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import Settings

SECRET_WORDS = ("key", "password", "secret", "token")


def parse_value(raw: str) -> Any:
    """A TOML-typed value (numbers, booleans, arrays); anything that is not TOML stays a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", f"Fix the line named, or move {path} aside.") from exc


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "wb") as handle:
            tomli_w.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` in the parsed file `data` (None removes it, back to its default); refuses secrets."""
    leaf_name = dotted.rsplit(".", 1)[-1]
    if any(leaf_name == word or leaf_name.endswith("_" + word) for word in SECRET_WORDS):
        raise ConfigError(
            f"{dotted} looks like a secret; secrets never go in the config file.",
            "Use `shoal config set-key` (the OS keyring) or the SHOAL_API_KEY environment variable.",
        )
    section, _, leaf = dotted.rpartition(".")
    target = data
    for part in filter(None, section.split(".")):
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{part} is not a section.", "Check the key's spelling.")
    if value is None:
        target.pop(leaf, None)
    else:
        target[leaf] = value


def set_value(path: Path, dotted: str, value: Any) -> Any:
    """Set `dotted` (e.g. "model.path") to `value` in the file at `path`. Returns the stored value.
    Raises ConfigError, leaving the file untouched, for a secret or an invalid value."""
    data = read(path)
    apply(data, dotted, value)
    try:
        Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Not saved: {problems}", "Give a valid value; the file was not changed.") from exc
    write_atomically(path, data)
    return value
