"""Finding GGUF files where other apps keep them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.providers.discovery import find_models

GGUF = b"GGUF\x03\x00\x00\x00" + b"\x00" * 32


def test_finds_lm_studio_gpt4all_ollama_and_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    lms = tmp_path / ".lmstudio" / "models" / "lmstudio-community" / "Qwen"
    lms.mkdir(parents=True)
    (lms / "qwen.gguf").write_bytes(GGUF)
    g4a = tmp_path / ".local" / "share" / "nomic.ai" / "GPT4All"
    g4a.mkdir(parents=True)
    (g4a / "orca.gguf").write_bytes(GGUF)
    (g4a / "not-a-model.gguf").write_bytes(b"html")
    ollama = tmp_path / ".ollama" / "models"
    (ollama / "blobs").mkdir(parents=True)
    (ollama / "blobs" / "sha256-abc").write_bytes(GGUF)
    manifest = ollama / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "3b"
    manifest.parent.mkdir(parents=True)
    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:abc"}]
    manifest.write_text(json.dumps({"layers": layers}))
    mine = tmp_path / "elsewhere"
    mine.mkdir()
    (mine / "mine.gguf").write_bytes(GGUF)
    found = {m.name: m.source for m in find_models([mine])}
    expected = {"mine.gguf": "configured", "qwen.gguf": "lmstudio", "orca.gguf": "gpt4all", "llama3.2:3b": "ollama"}
    assert found == expected


def test_missing_folders_are_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
    assert find_models([tmp_path / "absent"]) == []
