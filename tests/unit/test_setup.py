"""SetupService: the facade the first-run and settings dialogs use (real config file, in-memory keyring,
local HTTP servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from keyring.errors import NoKeyringError

from core import config_file
from core.errors import AuthenticationError, ConfigError, EndpointUnreachableError, ModelFileError, UserError
from core.models import DownloadProgress, load_catalog
from core.settings import load_settings
from core.setup import InvalidSettingsError, SetupService
from tests.fixtures.memory_keyring import MemoryKeyring
from tests.unit.test_download import GGUF_HEAD, LocalServer, free_port, payload, running_server, sha


def write_catalog(path: Path, url: str, data: bytes, *, verified: bool = True, filename: str = "tiny.gguf") -> Path:
    """A one-entry catalogue for a file served locally."""
    entry = load_catalog().models[0].model_dump()
    entry.update(
        id="tiny-test-model",
        name="Tiny test model",
        url=url,
        filename=filename,
        size_bytes=len(data),
        sha256=sha(data) if verified else None,
        verified=verified,
    )
    path.write_text(json.dumps({"version": 1, "models": [entry]}), encoding="utf-8")
    return path


def service(**kwargs: Any) -> SetupService:
    return SetupService(load_settings(), **kwargs)


def config_text(setup: SetupService) -> str:
    return setup.config_file.read_text(encoding="utf-8") if setup.config_file.exists() else ""


def gguf_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GGUF_HEAD + b"\x00" * 64)
    return path


@pytest.fixture
def server() -> Any:
    with running_server(models=["qwen2.5:1.5b", "llama3.2:1b"]) as srv:
        yield srv


# --- choosing a model --------------------------------------------------------------------------


def test_apply_local_model_writes_the_choice(tmp_path: Path) -> None:
    setup = service()
    assert setup.needs_model()
    model = gguf_file(tmp_path / "models" / "small.gguf")
    assert setup.apply_local_model(model) == model
    assert config_file.read(setup.config_file) == {"model": {"provider": "llama_cpp", "path": str(model)}}
    assert setup.settings.model.path == str(model) and not setup.needs_model()


def test_a_bad_model_file_is_refused_without_writing(tmp_path: Path) -> None:
    setup = service()
    (tmp_path / "notes.gguf").write_text("hello")
    with pytest.raises(ModelFileError, match="not a GGUF model"):
        setup.apply_local_model(tmp_path / "notes.gguf")
    with pytest.raises(ModelFileError, match="not found"):
        setup.apply_local_model(tmp_path / "missing.gguf")
    assert not setup.config_file.exists()


def test_apply_endpoint_puts_the_key_in_the_keyring_only() -> None:
    setup = service()
    setup.apply_endpoint("http://localhost:11434/v1/", "qwen2.5:1.5b", "sk-secret-123456")
    assert config_file.read(setup.config_file) == {
        "model": {"provider": "openai", "base_url": "http://localhost:11434/v1", "name": "qwen2.5:1.5b"}
    }
    assert MemoryKeyring.store == {("shoal", "api_key:default"): "sk-secret-123456"}
    assert "sk-secret" not in config_text(setup)
    assert setup.settings.model.provider == "openai" and not setup.needs_model()
    assert setup.api_key_status() == "A key is stored in the OS keyring." and setup.has_stored_key()
    # No key given: the stored one stays.
    setup.apply_endpoint("http://localhost:1234/v1", "other", None)
    assert MemoryKeyring.store == {("shoal", "api_key:default"): "sk-secret-123456"}
    assert setup.forget_api_key() and not setup.has_stored_key()


def test_bad_endpoint_values_are_rejected_without_touching_anything() -> None:
    setup = service()
    with pytest.raises(InvalidSettingsError) as caught:
        setup.apply_endpoint("localhost:11434", "", "sk-123")
    assert set(caught.value.problems) == {"model.base_url", "model.name"}
    assert "http://" in caught.value.problems["model.base_url"]
    assert not setup.config_file.exists() and MemoryKeyring.store == {}


def test_without_a_keyring_the_error_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: object, service: str, username: str, password: str) -> None:
        raise NoKeyringError("no backend")

    monkeypatch.setattr(MemoryKeyring, "set_password", refuse)
    setup = service()
    with pytest.raises(ConfigError, match="keyring") as caught:
        setup.apply_endpoint("https://api.example.com/v1", "gpt", "sk-123")
    assert "SHOAL_API_KEY" in caught.value.fix
    assert not setup.config_file.exists()


# --- testing an endpoint -------------------------------------------------------------------------


async def test_test_endpoint_lists_the_models(server: LocalServer) -> None:
    setup = service()
    assert await setup.test_endpoint(server.base_url, "qwen2.5:1.5b", None) == ["llama3.2:1b", "qwen2.5:1.5b"]
    assert server.seen[-1].path == "/v1/models"


async def test_test_endpoint_uses_the_key_and_reports_refusal(server: LocalServer) -> None:
    server.api_key = "sk-right"
    setup = service(endpoint_timeout=3)
    assert await setup.test_endpoint(server.base_url, "", "sk-right") == ["llama3.2:1b", "qwen2.5:1.5b"]
    with pytest.raises(AuthenticationError) as caught:
        await setup.test_endpoint(server.base_url, "", "sk-wrong")
    assert caught.value.fix
    setup.store_api_key("sk-right")  # a stored key is used when the field is left empty
    assert await setup.test_endpoint(server.base_url, "", None)


async def test_test_endpoint_errors() -> None:
    setup = service(endpoint_timeout=2)
    with pytest.raises(EndpointUnreachableError, match="Cannot reach"):
        await setup.test_endpoint(f"http://127.0.0.1:{free_port()}/v1", "", None)
    with pytest.raises(UserError, match="not an http"):
        await setup.test_endpoint("ollama", "", None)


# --- settings ----------------------------------------------------------------------------------


def test_save_validates_and_reloads() -> None:
    setup = service()
    assert setup.save("model.temperature", 0.2) == 0.2
    assert setup.settings.model.temperature == 0.2
    with pytest.raises(InvalidSettingsError) as caught:
        setup.save("model.temperature", 5)
    assert caught.value.problems == {"model.temperature": "Input should be less than or equal to 2"}
    assert config_file.read(setup.config_file) == {"model": {"temperature": 0.2}}
    setup.save("model.seed", 7)
    setup.save("model.seed", None)  # None removes the key: back to the default
    assert setup.settings.model.seed is None and "seed" not in config_text(setup)


def test_save_many_is_all_or_nothing() -> None:
    setup = service()
    before = setup.settings
    with pytest.raises(InvalidSettingsError) as caught:
        setup.save_many({"model.n_ctx": 100, "model.top_p": 0.5, "tools.shell_timeout": -1})
    assert set(caught.value.problems) == {"model.n_ctx", "tools.shell_timeout"}
    assert "greater than or equal to 256" in caught.value.problems["model.n_ctx"]
    assert not setup.config_file.exists() and setup.settings == before
    assert setup.validate({"model.n_ctx": 100}) == {"model.n_ctx": "Input should be greater than or equal to 256"}
    assert setup.validate({"model.n_ctx": 8192}) == {}
    setup.save_many({"model.n_ctx": 8192, "tools.auto_approve": ["shell"]})
    assert setup.settings.model.n_ctx == 8192 and setup.settings.tools.auto_approve == ["shell"]


def test_secrets_and_unknown_keys_are_refused() -> None:
    setup = service()
    with pytest.raises(InvalidSettingsError, match="secret"):
        setup.save_many({"model.api_key": "sk-123"})
    with pytest.raises(ConfigError, match="secret"):
        setup.save("model.api_key", "sk-123")
    with pytest.raises(InvalidSettingsError) as caught:
        setup.save_many({"model.colour": "blue"})
    assert "model.colour" in caught.value.problems
    assert not setup.config_file.exists()


def test_overrides_and_optional_settings(tmp_path: Path) -> None:
    loaded = load_settings(None, {"model": {"max_tokens": 77}})
    setup = SetupService(loaded)
    assert setup.overridden_by("tools.workspace") == "environment variable SHOAL_TOOLS__WORKSPACE"
    assert setup.overridden_by("model.max_tokens") == "a command-line flag"
    assert setup.overridden_by("model.temperature") is None
    setup.save("model.temperature", 0.3)
    assert setup.settings.model.max_tokens == 77  # the flag survives the reload after a save
    assert setup.has_setting("model.n_ctx") and setup.has_setting("tools.web_allow_private")
    assert not setup.has_setting("model.nope") and not setup.has_setting("model.n_ctx.deeper")


# --- finding and downloading -------------------------------------------------------------------


async def test_find_models_looks_in_the_download_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    setup = service()
    downloaded = gguf_file(setup.models_dir() / "a.gguf")
    home = gguf_file(tmp_path / "home" / "models" / "b.gguf")
    found = await setup.find_models()
    assert {(m.path, m.source) for m in found} == {(downloaded, "configured"), (home, "home")}


async def test_download_puts_a_checked_model_in_the_models_folder(server: LocalServer, tmp_path: Path) -> None:
    data = payload(700_000)
    catalog = write_catalog(tmp_path / "models.json", server.serve("/tiny.gguf", data), data)
    setup = service(catalog_path=catalog)
    [entry] = setup.catalog()
    reports: list[DownloadProgress] = []
    path = await setup.download(entry, reports.append)
    assert path == setup.models_dir() / "tiny.gguf" and path.read_bytes() == data
    assert reports[-1].sha256_checked and setup.partial_download(entry) == 0
    assert setup.apply_local_model(path) == path and setup.settings.model.path == str(path)


async def test_a_download_that_is_not_gguf_is_deleted(server: LocalServer, tmp_path: Path) -> None:
    html = b"<html>please log in</html>"
    catalog = write_catalog(tmp_path / "models.json", server.serve("/page.gguf", html), html, verified=False)
    setup = service(catalog_path=catalog)
    [entry] = setup.catalog()
    with pytest.raises(ModelFileError, match="not a usable GGUF"):
        await setup.download(entry)
    assert not (setup.models_dir() / "tiny.gguf").exists()
