"""The one facade the first-run and settings dialogs use: finding, downloading, testing and saving a model
choice, and changing settings. Qt-free; the dialogs never touch the config file, keyring or discovery.

Every change is validated against the whole settings model before anything is written; a change of
several keys is one atomic write, and an API key goes to the keyring only, never into the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from core import config_file
from core.errors import ConfigError, EndpointUnreachableError, ModelFileError, UserError
from core.models.catalog import CatalogEntry, load_catalog
from core.models.download import DownloadCancelledError, ProgressCallback, download_file, partial_size
from core.paths import expand
from core.providers.discovery import FoundModel, find_models
from core.providers.gguf_file import check_model_file
from core.secrets import delete_api_key, env_var_for, get_api_key, set_api_key
from core.settings import LoadedSettings, Settings, load_settings

ENDPOINT_PRESETS: tuple[tuple[str, str], ...] = (
    ("Ollama", "http://localhost:11434/v1"),
    ("LM Studio", "http://localhost:1234/v1"),
    ("llama.cpp server", "http://localhost:8080/v1"),
    ("OpenAI", "https://api.openai.com/v1"),
    ("OpenRouter", "https://openrouter.ai/api/v1"),
)


class InvalidSettingsError(ConfigError):
    """One or more values were rejected; `problems` maps each dotted key to its validation message."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        text = "; ".join(f"{key}: {msg}" for key, msg in self.problems.items())
        super().__init__(f"Not saved: {text}", "Correct the value named; nothing was changed.")


class SetupService:
    def __init__(
        self, loaded: LoadedSettings, *, catalog_path: Path | None = None, endpoint_timeout: float = 10.0
    ) -> None:
        self._loaded = loaded
        self._cli = _cli_overrides(loaded)
        self._catalog_path = catalog_path
        self.endpoint_timeout = endpoint_timeout

    # --- current state ---------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._loaded.settings

    @property
    def config_file(self) -> Path:
        return self._loaded.config_file

    def reload(self) -> Settings:
        self._loaded = load_settings(self._loaded.config_file, self._cli)
        return self._loaded.settings

    def needs_model(self) -> bool:
        model = self.settings.model
        if model.provider == "llama_cpp":
            return not model.path.strip()
        return not model.base_url.strip() or not model.name.strip()

    def overridden_by(self, dotted: str) -> str | None:
        """Where a value that the file cannot change comes from (environment variable or flag), else None."""
        origin = self._loaded.source_of(dotted)
        if origin == "env":
            return "environment variable SHOAL_" + dotted.upper().replace(".", "__")
        if origin == "cli":
            return "a command-line flag"
        return None

    def has_setting(self, dotted: str) -> bool:
        """Whether the settings model has this key (lets the UI offer settings that arrive later)."""
        model: type[BaseModel] = Settings
        parts = dotted.split(".")
        for index, part in enumerate(parts):
            field = model.model_fields.get(part)
            if field is None:
                return False
            if index < len(parts) - 1:
                annotation = field.annotation
                if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                    return False
                model = annotation
        return True

    # --- finding and downloading models --------------------------------------------------------

    def models_dir(self) -> Path:
        """Where downloaded models go: <data dir>/models."""
        return self.settings.paths.data_path() / "models"

    async def find_models(self) -> list[FoundModel]:
        extra = [self.models_dir()]
        if self.settings.paths.models_dir:
            extra.append(expand(self.settings.paths.models_dir))
        return await asyncio.to_thread(find_models, extra)

    def catalog(self) -> list[CatalogEntry]:
        return list(load_catalog(self._catalog_path).models)

    def download_target(self, entry: CatalogEntry) -> Path:
        return self.models_dir() / entry.filename

    def partial_download(self, entry: CatalogEntry) -> int:
        """Bytes kept from an interrupted or cancelled download of `entry` (0 if none)."""
        return partial_size(self.download_target(entry))

    async def download(
        self, entry: CatalogEntry, progress: ProgressCallback | None = None, cancel: asyncio.Event | None = None
    ) -> Path:
        """Download (or resume) `entry` into models_dir(); the file is checked before it gets its name.
        Raises ShoalError subclasses (DownloadCancelledError when `cancel` is set)."""
        target = self.download_target(entry)
        result = await download_file(
            entry.url,
            target,
            expected_size=entry.expected_size,
            expected_sha256=entry.expected_sha256,
            progress=progress,
            cancel=cancel,
        )
        try:
            check_model_file(str(result.path))
        except ModelFileError as exc:
            if not result.already_present:
                result.path.unlink(missing_ok=True)
            raise ModelFileError(
                f"The file downloaded from {urlsplit(entry.url).netloc} is not a usable GGUF model: {exc.message}",
                "Retry later, or choose another model.",
            ) from exc
        return result.path

    # --- endpoints -------------------------------------------------------------------------

    async def test_endpoint(self, base_url: str, model_name: str = "", api_key: str | None = None) -> list[str]:
        """The model ids the OpenAI-compatible server at `base_url` lists. Raises ShoalError on failure.
        Without `api_key`, a key already stored for the endpoint is used."""
        from core.providers.openai_compat import OpenAIProvider

        base_url = _checked_base_url(base_url)
        key_name = self.settings.model.key_name
        if not api_key:
            stored = get_api_key(key_name)
            api_key = stored.value if stored else None
        provider = OpenAIProvider(
            base_url, model_name.strip() or "-", api_key, key_name=key_name, timeout=self.endpoint_timeout
        )
        try:
            return await asyncio.wait_for(provider.list_models(), timeout=self.endpoint_timeout * 3)
        except TimeoutError as exc:
            raise EndpointUnreachableError(
                f"{base_url} did not answer within {self.endpoint_timeout * 3:g} s.",
                "Check the server is running and not overloaded, then test again.",
            ) from exc
        finally:
            await provider.stop()

    # --- saving a choice -------------------------------------------------------------------

    def check_base_url(self, base_url: str) -> str:
        """The cleaned-up endpoint address, or UserError saying what is wrong with it."""
        return _checked_base_url(base_url)

    def check_model_file(self, path: str | Path) -> Path:
        """The resolved path of a plausible GGUF file, or ModelFileError/ModelNotConfiguredError saying why not."""
        return check_model_file(str(path))

    def apply_local_model(self, path: str | Path) -> Path:
        checked = check_model_file(str(path))
        self.save_many({"model.provider": "llama_cpp", "model.path": str(checked)})
        return checked

    def apply_endpoint(self, base_url: str, model_name: str, api_key: str | None = None) -> None:
        """Use an OpenAI-compatible endpoint. A key goes to the OS keyring (ConfigError explaining the
        environment variable fallback when there is none); None or "" keeps the stored key."""
        problems: dict[str, str] = {}
        try:
            base_url = _checked_base_url(base_url)
        except UserError as exc:
            problems["model.base_url"] = exc.message
        if not model_name.strip():
            problems["model.name"] = "Enter the model's name (Test lists the names the server offers)."
        if problems:
            raise InvalidSettingsError(problems)
        values = {"model.provider": "openai", "model.base_url": base_url, "model.name": model_name.strip()}
        data = self._validated(values)  # nothing stored or written unless every value is valid
        if api_key:
            set_api_key(api_key.strip(), self.settings.model.key_name)
        config_file.write_atomically(self.config_file, data)
        self.reload()

    # --- API key ---------------------------------------------------------------------------

    def api_key_status(self) -> str:
        """Where the endpoint's key comes from, for display; never the key itself."""
        key_name = self.settings.model.key_name
        secret = get_api_key(key_name)
        if secret is None:
            return "No API key stored (local servers need none)."
        if secret.origin == "keyring":
            return "A key is stored in the OS keyring."
        return f"Using the key from the environment variable {secret.origin.removeprefix('env:')}."

    def has_stored_key(self) -> bool:
        secret = get_api_key(self.settings.model.key_name)
        return secret is not None and secret.origin == "keyring"

    def store_api_key(self, api_key: str) -> None:
        if not api_key.strip():
            raise UserError("The API key is empty.", "Paste the key, or leave the field empty to keep the stored one.")
        set_api_key(api_key.strip(), self.settings.model.key_name)

    def forget_api_key(self) -> bool:
        return delete_api_key(self.settings.model.key_name)

    def key_env_var(self) -> str:
        return env_var_for(self.settings.model.key_name)

    # --- settings --------------------------------------------------------------------------

    def validate(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Per-key messages for the values the settings model rejects (empty when all are valid)."""
        try:
            self._validated(values)
        except InvalidSettingsError as exc:
            return exc.problems
        return {}

    def save(self, dotted: str, value: Any) -> Any:
        """Set one key in config.toml (validated, atomic) and reload. None removes the key (its default)."""
        if value is None:
            self.save_many({dotted: None})
            return None
        try:
            stored = config_file.set_value(self.config_file, dotted, value)
        except ConfigError as exc:
            if exc.message.startswith("Not saved: "):
                raise InvalidSettingsError({dotted: _strip_key(exc.message, dotted)}) from exc
            raise
        self.reload()
        return stored

    def save_many(self, values: Mapping[str, Any]) -> None:
        """Set several keys in one atomic write, or none of them (InvalidSettingsError names each bad one).
        A value of None removes the key, so it falls back to its default."""
        if not values:
            return
        data = self._validated(values)
        config_file.write_atomically(self.config_file, data)
        self.reload()

    def _validated(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The file's data with `values` applied, checked against the settings model."""
        data = config_file.read(self.config_file)
        problems: dict[str, str] = {}
        for dotted, value in values.items():
            try:
                config_file.apply(data, dotted, value)
            except ConfigError as exc:
                problems[dotted] = exc.message
        if problems:
            raise InvalidSettingsError(problems)
        try:
            Settings(**data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                key = _owner(loc, values) or loc
                problems.setdefault(key, err["msg"])
            raise InvalidSettingsError(problems) from exc
        return data


# --- helpers ---------------------------------------------------------------------------------


def _checked_base_url(base_url: str) -> str:
    url = base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(
            f"{url or 'The address'} is not an http:// or https:// address.",
            "Enter the server's address, e.g. http://localhost:11434/v1 (Ollama).",
        )
    return url.rstrip("/")


def _owner(loc: str, values: Mapping[str, Any]) -> str | None:
    """The changed key a validation error belongs to (exact key, or the key it sits under)."""
    for dotted in values:
        if loc == dotted or loc.startswith(dotted + "."):
            return dotted
    return None


def _strip_key(message: str, dotted: str) -> str:
    text = message.removeprefix("Not saved: ")
    return text.removeprefix(f"{dotted}: ")


def _cli_overrides(loaded: LoadedSettings) -> dict[str, Any]:
    """The command-line overrides behind `loaded`, so a reload after saving keeps them."""
    nested: dict[str, Any] = {}
    for dotted, origin in loaded.sources.items():
        if origin != "cli":
            continue
        value: Any = loaded.settings
        try:
            for part in dotted.split("."):
                value = getattr(value, part)
        except AttributeError:
            continue
        if isinstance(value, BaseModel):
            continue
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            value = [v.model_dump() for v in value]
        target = nested
        *sections, leaf = dotted.split(".")
        for part in sections:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


__all__ = [
    "ENDPOINT_PRESETS",
    "DownloadCancelledError",
    "FoundModel",
    "InvalidSettingsError",
    "SetupService",
]
