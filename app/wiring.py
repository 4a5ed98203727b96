"""Builds the core from settings for a front end. The only place that knows both sides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.logs import register_secret, setup_file_logging
from core.secrets import get_api_key
from core.service import AgentCore
from core.settings import LoadedSettings, load_settings
from core.tools.registry import ApprovalCallback, deny_all


def cli_overrides(
    *,
    model: str | None = None,
    endpoint: str | None = None,
    model_name: str | None = None,
    data_dir: str | None = None,
    workspace: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Turn command-line flags into the top layer of settings (only flags actually given)."""
    out: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            out.setdefault(section, {})[key] = value

    if model is not None:
        put("model", "provider", "llama_cpp")
        put("model", "path", model)
    if endpoint is not None:
        put("model", "provider", "openai")
        put("model", "base_url", endpoint)
    put("model", "name", model_name)
    put("model", "max_tokens", max_tokens)
    put("model", "temperature", temperature)
    put("paths", "data_dir", data_dir)
    put("tools", "workspace", workspace)
    return out


def load(config: Path | None, overrides: dict[str, Any]) -> LoadedSettings:
    return load_settings(config, overrides)


def setup_logging(loaded: LoadedSettings) -> None:
    """The log file, with every secret this configuration knows registered for scrubbing."""
    settings = loaded.settings
    setup_file_logging(settings.paths.data_path() / "logs", settings.log_level)
    secret = get_api_key(settings.model.key_name) if settings.model.provider == "openai" else None
    register_secret(secret.value if secret else None)
    for server in settings.mcp_servers:  # MCP server environments often carry access tokens
        for value in server.env.values():
            register_secret(value)


def build_core(loaded: LoadedSettings, approve: ApprovalCallback = deny_all) -> AgentCore:
    setup_logging(loaded)
    return AgentCore(loaded.settings, approve=approve, config_file=loaded.config_file)
