"""First run in the terminal: no model configured yet, so offer the GGUF files already on this machine."""

from __future__ import annotations

from app import render
from core import config_file
from core.errors import ConfigError
from core.paths import expand
from core.providers.discovery import find_models
from core.settings import LoadedSettings, Settings

SETUP_HINT = (
    "Set one up:\n"
    "  shoal config set model.path /path/to/model.gguf            (a local GGUF file)\n"
    "  shoal config set model.provider openai                     (or an OpenAI-compatible endpoint:)\n"
    "  shoal config set model.base_url http://localhost:11434/v1  (Ollama; LM Studio: http://localhost:1234/v1)\n"
    "  shoal config set model.name MODEL"
)


def needs_model(settings: Settings) -> bool:
    model = settings.model
    return not model.path.strip() if model.provider == "llama_cpp" else not model.base_url.strip()


def pick_model(loaded: LoadedSettings) -> bool:
    """Ask which found GGUF file to use and save it to config.toml. True when one was chosen."""
    extra = [expand(loaded.settings.paths.models_dir)] if loaded.settings.paths.models_dir else []
    found = find_models(extra)
    render.err.print("[bold]Welcome to Shoal.[/bold] No model is configured yet.")
    if not found:
        render.err.print("No GGUF files were found (LM Studio, GPT4All, Ollama, ~/models).\n" + SETUP_HINT)
        return False
    for number, model in enumerate(found, start=1):
        render.err.print(f"  {number:2d}. {model.name}  [dim]{model.size / 2**30:.2f} GiB, {model.source}[/dim]")
    answer = input(f"Use which model? [1-{len(found)}, Enter to skip] ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(found):
        render.err.print(SETUP_HINT)
        return False
    chosen = found[int(answer) - 1]
    try:
        config_file.set_value(loaded.config_file, "model.provider", "llama_cpp")
        config_file.set_value(loaded.config_file, "model.path", str(chosen.path))
    except ConfigError as exc:
        render.print_error(exc.to_dict())
        return False
    render.err.print(f"[green]Saved[/green] model.path = {chosen.path}  [dim]({loaded.config_file})[/dim]")
    return True
