"""Finds GGUF models already on disk: a configured folder and where LM Studio, GPT4All and Ollama keep theirs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.providers.gguf_file import GGUF_MAGIC

MAX_DEPTH = 5


@dataclass(frozen=True)
class FoundModel:
    path: Path
    size: int
    source: str  # configured | lmstudio | gpt4all | ollama | home
    name: str  # display name (Ollama tag, or file name)


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def known_locations() -> list[tuple[str, Path]]:
    home = _home()
    places = [
        ("lmstudio", home / ".lmstudio" / "models"),
        ("lmstudio", home / ".cache" / "lm-studio" / "models"),
        ("gpt4all", home / ".local" / "share" / "nomic.ai" / "GPT4All"),
        ("gpt4all", home / "Library" / "Application Support" / "nomic.ai" / "GPT4All"),
        ("home", home / "models"),
        ("home", home / "Shoal" / "models"),
    ]
    if sys.platform == "win32":  # harmless elsewhere
        places.append(("gpt4all", home / "AppData" / "Local" / "nomic.ai" / "GPT4All"))
    return places


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _walk(root: Path, depth: int = 0) -> Iterator[Path]:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH and not entry.name.startswith("."):
            yield from _walk(Path(entry.path), depth + 1)
        elif entry.name.lower().endswith(".gguf") and entry.is_file():
            yield Path(entry.path)


def _ollama_models(root: Path) -> Iterator[FoundModel]:
    """Ollama stores GGUF weights as content-addressed blobs; its manifests name them."""
    manifests = root / "manifests"
    for manifest in _walk_files(manifests):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for layer in data.get("layers", []):
            if layer.get("mediaType") == "application/vnd.ollama.image.model":
                blob = root / "blobs" / str(layer.get("digest", "")).replace(":", "-")
                if blob.is_file() and _is_gguf(blob):
                    tag = f"{manifest.parent.name}:{manifest.name}"
                    yield FoundModel(blob, blob.stat().st_size, "ollama", tag)


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            yield Path(dirpath) / name


def find_models(extra_dirs: Iterable[Path] = ()) -> list[FoundModel]:
    seen: set[Path] = set()
    found: list[FoundModel] = []
    places = [("configured", d) for d in extra_dirs] + known_locations()
    for source, root in places:
        for path in _walk(root):
            real = path.resolve()
            if real not in seen and _is_gguf(path):
                seen.add(real)
                found.append(FoundModel(path, path.stat().st_size, source, path.name))
    ollama_root = Path(os.environ.get("OLLAMA_MODELS") or _home() / ".ollama" / "models")
    for model in _ollama_models(ollama_root):
        if model.path.resolve() not in seen:
            seen.add(model.path.resolve())
            found.append(model)
    return found
