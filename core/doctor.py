"""`shoal doctor`: checks everything Shoal depends on and says what to fix."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import sqlite3
import sys
from dataclasses import dataclass

from core.errors import ShoalError
from core.secrets import env_var_for, get_api_key, keyring_backend
from core.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # a failed optional check is a warning, not a failure


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("python", ok, f"Python {version}", "" if ok else "Install Python 3.11 or newer.")


def check_data_dir(settings: Settings) -> Check:
    path = settings.paths.data_path()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
        free = shutil.disk_usage(path).free
        with sqlite3.connect(path / "shoal.db") as conn:
            conn.execute("PRAGMA quick_check").fetchone()
    except (OSError, sqlite3.Error) as exc:
        return Check("data dir", False, f"{path}: {exc}", "Fix permissions or set paths.data_dir elsewhere.")
    if free < 200 * 1024 * 1024:
        return Check("data dir", False, f"{path}: only {free // 2**20} MiB free", "Free some disk space.")
    return Check("data dir", True, f"{path} (writable, {free // 2**30} GiB free)")


def check_workspace(settings: Settings) -> Check:
    path = settings.tools.workspace_path()
    if not path.exists():
        return Check("workspace", True, f"{path} (will be created on first use)", required=False)
    ok = os.access(path, os.W_OK)
    return Check("workspace", ok, str(path), "" if ok else "Make it writable or set tools.workspace.")


def check_keyring(settings: Settings) -> Check:
    name, usable = keyring_backend()
    if usable:
        return Check("keyring", True, name, required=False)
    return Check(
        "keyring",
        False,
        f"no usable OS keyring ({name})",
        f"Install/unlock GNOME Keyring or KWallet, or set {env_var_for(settings.model.key_name)} for the API key.",
        required=settings.model.provider == "openai" and get_api_key(settings.model.key_name) is None,
    )


def check_llama(settings: Settings) -> list[Check]:
    from core.providers.gguf_file import check_model_file

    checks = []
    try:
        path = check_model_file(settings.model.path)
        checks.append(Check("model file", True, f"{path} ({path.stat().st_size / 2**20:.1f} MiB)"))
    except ShoalError as exc:
        checks.append(Check("model file", False, exc.message, exc.fix))
    found = importlib.util.find_spec("llama_cpp") is not None
    checks.append(
        Check(
            "llama-cpp-python", found, "installed" if found else "not installed", "" if found else "Run `make install`."
        )
    )
    return checks


async def check_endpoint(settings: Settings) -> list[Check]:
    from core.providers.openai_compat import OpenAIProvider

    model = settings.model
    try:
        secret = get_api_key(model.key_name)
        provider = OpenAIProvider(model.base_url, model.name, secret.value if secret else None, timeout=10)
        try:
            served = await provider.list_models()
        finally:
            await provider.stop()
    except ShoalError as exc:
        return [Check("endpoint", False, exc.message, exc.fix)]
    checks = [Check("endpoint", True, f"{model.base_url} answers ({len(served)} models)")]
    if served and model.name not in served:
        checks.append(
            Check(
                "model name",
                False,
                f"{model.name!r} is not served by {model.base_url}",
                f"Use one of: {', '.join(served[:8])}",
            )
        )
    return checks


def check_mcp(settings: Settings) -> list[Check]:
    checks = []
    for server in settings.mcp_servers:
        if not server.enabled:
            continue
        found = shutil.which(server.command) is not None or os.path.isfile(server.command)
        fix = "" if found else f"Install {server.command!r} or fix mcp_servers[{server.name}].command."
        checks.append(Check(f"mcp:{server.name}", found, server.command, fix, required=False))
    return checks


def check_memory(settings: Settings) -> Check:
    """The embedding model can be found and its packages are installed (without loading it: that takes seconds)."""
    import importlib.util

    memory = settings.memory
    if not memory.enabled:
        return Check("memory", True, "switched off (memory.enabled = false)", required=False)
    from core.errors import ShoalError
    from core.memory.embedder import INSTALL_HINT, open_embedder, resolve

    try:
        model_id = open_embedder(memory.embedder, memory.model_path, 1).model_id
    except ShoalError as exc:
        return Check("memory", False, exc.message + " Memory falls back to full-text search.", exc.fix, required=False)
    backend, _ = resolve(memory.embedder, memory.model_path)
    needed = ("llama_cpp",) if backend == "gguf" else ("torch", "sentence_transformers")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        return Check("memory", False, f"{', '.join(missing)} not installed", INSTALL_HINT, required=False)
    return Check("memory", True, f"embedding model {model_id} ({backend})", required=False)


async def run_checks(settings: Settings) -> list[Check]:
    checks = [check_python(), check_data_dir(settings), check_workspace(settings), check_keyring(settings)]
    if settings.model.provider == "llama_cpp":
        checks += await asyncio.to_thread(check_llama, settings)
    else:
        checks += await check_endpoint(settings)
    checks += check_mcp(settings)
    checks.append(await asyncio.to_thread(check_memory, settings))
    return checks
