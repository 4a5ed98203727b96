"""Real models for integration tests: GGUF files generated once per session, and a real OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.gguf_models import write_random_model, write_scripted_model
from tests.fixtures.llama_server import LlamaServer

if importlib.util.find_spec("llama_cpp") is None:  # never skip the real path: say how to get it
    raise RuntimeError("llama-cpp-python is not installed: run `make install` (or `make test`, which installs it).")

PLAIN_REPLY = "Hello from Shoal. The tide is in."
TOOL_REPLY = '<tool_call>{"name": "read_file", "arguments": {"path": "notes.txt"}}</tool_call>'


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def plain_model(models_dir: Path) -> Path:
    return write_scripted_model(models_dir / "plain.gguf", PLAIN_REPLY)


@pytest.fixture(scope="session")
def tool_model(models_dir: Path) -> Path:
    return write_scripted_model(models_dir / "tool.gguf", TOOL_REPLY)


@pytest.fixture(scope="session")
def endless_model(models_dir: Path) -> Path:
    """Random weights that never emit end-of-turn: generation runs until stopped."""
    return write_random_model(models_dir / "endless.gguf", eos_suppressed=True)


@pytest.fixture(scope="session")
def llama_server(plain_model: Path) -> Iterator[LlamaServer]:
    with LlamaServer(plain_model, n_ctx=4096) as server:
        yield server


from tests.fixtures.memory import embedding_client  # noqa: E402, F401 - the shared embedding model process
