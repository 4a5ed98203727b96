"""Settings: defaults < file < environment < CLI, with provenance; secrets only in keyring/env."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.secrets import get_api_key, mask, set_api_key
from core.settings import Settings, flatten, load_settings


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_PATHS__DATA_DIR")
    monkeypatch.delenv("SHOAL_TOOLS__WORKSPACE")
    loaded = load_settings(tmp_path / "absent.toml")
    assert loaded.settings.model.provider == "llama_cpp"
    assert loaded.settings.agent.max_iterations == 8
    assert loaded.source_of("model.n_ctx") == "default"
    assert loaded.source_of("paths.data_dir") == "default"


def test_precedence_file_then_env_then_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(
        tmp_path / "c.toml", "[model]\nn_ctx = 2048\nmax_tokens = 100\ntemperature = 0.1\n[agent]\nmax_iterations = 3\n"
    )
    monkeypatch.setenv("SHOAL_MODEL__MAX_TOKENS", "200")
    monkeypatch.setenv("SHOAL_MODEL__TEMPERATURE", "0.2")
    loaded = load_settings(config, {"model": {"temperature": 0.3}})
    s = loaded.settings
    assert (s.model.n_ctx, s.model.max_tokens, s.model.temperature, s.agent.max_iterations) == (2048, 200, 0.3, 3)
    assert loaded.source_of("model.n_ctx") == "file"
    assert loaded.source_of("model.max_tokens") == "env"
    assert loaded.source_of("model.temperature") == "cli"
    assert loaded.source_of("model.top_p") == "default"


def test_invalid_value_names_the_field_and_its_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_MODEL__N_CTX", "12")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "none.toml")
    assert "model.n_ctx" in info.value.message and "SHOAL_MODEL__N_CTX" in info.value.message


def test_bad_toml_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.toml", "[model\npath = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(config) in info.value.message and "line 1" in info.value.message


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", "[model]\npaht = 'typo.gguf'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert "model.paht" in info.value.message


def test_mcp_servers_from_file(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml", '[[mcp_servers]]\nname = "fs"\ncommand = "npx"\nargs = ["-y", "server"]\n'
    )
    s = load_settings(config).settings
    assert s.mcp_servers[0].name == "fs" and s.mcp_servers[0].args == ["-y", "server"]


def test_no_secret_field_exists_in_settings() -> None:
    keys = flatten(Settings())
    assert not [k for k in keys if k.endswith("api_key") or k.endswith("password") or k.endswith("token")]


def test_api_key_keyring_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_api_key() is None
    monkeypatch.setenv("SHOAL_API_KEY", "sk-from-environment-1234")
    secret = get_api_key()
    assert secret is not None and secret.origin == "env:SHOAL_API_KEY"
    set_api_key("sk-from-keyring-abcd")
    secret = get_api_key()
    assert secret is not None and secret.value == "sk-from-keyring-abcd" and secret.origin == "keyring"
    assert secret.masked == "sk-…abcd" and "from-keyring" not in secret.masked
    assert mask("short") == "****"


def test_named_keys_use_their_own_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_API_KEY_OPENROUTER", "sk-or-12345678")
    secret = get_api_key("openrouter")
    assert secret is not None and secret.origin == "env:SHOAL_API_KEY_OPENROUTER"


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [key for key in flatten(Settings()) if key != "mcp_servers" and f"`{key}`" not in doc]
    assert missing == []
