"""Writing config.toml: validated, atomic, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import config_file
from core.errors import ConfigError


def test_set_value_creates_sections_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[agent]\nmax_iterations = 4\n")
    assert config_file.set_value(path, "model.max_tokens", 512) == 512
    assert config_file.set_value(path, "tools.auto_approve", config_file.parse_value('["shell"]')) == ["shell"]
    data = config_file.read(path)
    assert data == {"agent": {"max_iterations": 4}, "model": {"max_tokens": 512}, "tools": {"auto_approve": ["shell"]}}


@pytest.mark.parametrize("key", ["model.api_key", "model.password", "model.secret", "paths.token", "model.key"])
def test_secrets_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match="secret"):
        config_file.set_value(tmp_path / "c.toml", key, "sk-123")
    assert not (tmp_path / "c.toml").exists()


def test_invalid_value_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[model]\nn_ctx = 4096\n")
    with pytest.raises(ConfigError, match=r"model\.n_ctx"):
        config_file.set_value(path, "model.n_ctx", 3)
    assert path.read_text() == "[model]\nn_ctx = 4096\n"
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_parse_value_types() -> None:
    assert config_file.parse_value("3") == 3 and config_file.parse_value("true") is True
    assert config_file.parse_value("~/models/x.gguf") == "~/models/x.gguf"
