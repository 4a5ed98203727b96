"""Checks on a GGUF file before llama.cpp sees it, so a bad path gets a clear message, not a crash."""

from __future__ import annotations

from pathlib import Path

from core.errors import ModelFileError, ModelNotConfiguredError
from core.paths import expand

GGUF_MAGIC = b"GGUF"


def check_model_file(path_text: str) -> Path:
    """Return the resolved path of a plausible GGUF file, or raise an error naming cause and fix."""
    if not path_text.strip():
        raise ModelNotConfiguredError(
            "No model is configured.",
            'Set model.path to a .gguf file (see `shoal models`), or set model.provider = "openai" with a base_url.',
        )
    path = expand(path_text.strip())
    if not path.exists():
        raise ModelFileError(f"Model file not found: {path}", "Fix model.path; `shoal models` lists GGUF files found.")
    if path.is_dir():
        raise ModelFileError(f"model.path is a folder, not a file: {path}", "Point model.path at the .gguf file.")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelFileError(f"Cannot read {path}: {exc.strerror}", "Check the file's permissions.") from exc
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelFileError(
            f"{path} is not a GGUF model (it does not start with the GGUF signature).",
            "Download the model again or choose another .gguf file; other formats need converting to GGUF.",
        )
    version = int.from_bytes(head[4:8], "little")
    if version not in (2, 3):
        raise ModelFileError(f"{path} uses GGUF version {version}, which this llama.cpp cannot read.", "Update Shoal.")
    return path
