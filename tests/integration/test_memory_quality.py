"""Hybrid retrieval beats either method alone on a small labelled set (tests/data/memory_eval.json).

The set mixes questions that paraphrase their note (full text misses them), questions that hinge on a rare
exact token such as an error code or a name (embeddings blur those), and questions that need both. The
figures are printed (pytest -s) and reported in docs/memory.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.memory.embed_process import EmbeddingClient
from tests.fixtures.memory import memory_at

EVAL = Path(__file__).resolve().parents[1] / "data" / "memory_eval.json"


def _scores(ranks: list[int | None]) -> dict[str, float]:
    """Mean reciprocal rank and recall at 1 and 3 (rank None: not in the top 10)."""
    count = len(ranks)
    return {
        "mrr": sum(1 / r for r in ranks if r) / count,
        "r@1": sum(1 for r in ranks if r == 1) / count,
        "r@3": sum(1 for r in ranks if r and r <= 3) / count,
    }


async def test_hybrid_retrieval_beats_vector_and_full_text_alone(
    tmp_path: Path, embedding_client: EmbeddingClient
) -> None:
    data = json.loads(EVAL.read_text())
    async with memory_at(tmp_path, embedding_client) as memory:
        ids = {}
        for key, text in data["docs"].items():
            ids[(await memory.remember(text)).source_id] = key
        results = {}
        for mode in ("vector", "text", "hybrid"):
            ranks: list[int | None] = []
            for query in data["queries"]:
                hits = await memory.recall(query["q"], limit=10, mode=mode)
                keys = [ids[h.source_id] for h in hits]
                ranks.append(keys.index(query["relevant"]) + 1 if query["relevant"] in keys else None)
            results[mode] = _scores(ranks)
    print("\nretrieval on tests/data/memory_eval.json:", json.dumps(results))
    hybrid, vector, text = results["hybrid"], results["vector"], results["text"]
    assert hybrid["mrr"] > vector["mrr"] and hybrid["mrr"] > text["mrr"], results
    assert hybrid["r@3"] >= max(vector["r@3"], text["r@3"]), results
    assert hybrid["r@1"] >= 0.8, results
