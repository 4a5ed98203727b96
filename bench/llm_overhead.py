"""Token throughput and time to first token: Shoal's agent loop versus calling llama_cpp directly.

Both sides load the same generated GGUF (~26M parameters, f16, random weights that never end the turn, so
every run produces exactly --tokens tokens) with the same threads and context, and answer the same chat
(system prompt + user message, greedy). Rounds alternate raw and Shoal, and each round changes the user
message so llama.cpp's prefix cache never skips prompt evaluation for either side.

Shoal's side is the whole path a front end uses: AgentCore.send → agent loop (timeline writes before the
model is called) → provider worker thread → event queue → AssistantDelta events.

Run: .venv/bin/python bench/llm_overhead.py [--tokens 256] [--rounds 5]
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

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import events as ev
from core.providers.llama_local import LlamaCppProvider
from core.service import AgentCore
from core.settings import DEFAULT_SYSTEM_PROMPT, load_settings
from tests.fixtures.gguf_models import write_random_model

THREADS = 2
N_CTX = 2048


def prompt(round_no: int) -> str:
    return f"Round {round_no}: tell me a long story about the sea, the tides and the lighthouse keeper."


def raw_run(llm, text: str, tokens: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": text}]
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for chunk in llm.create_chat_completion(messages=messages, stream=True, temperature=0.0, max_tokens=tokens):
        if chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            first = first or last
            count += 1
    return (first - started) * 1000, (count - 1) / (last - first), count


async def shoal_run(core: AgentCore, text: str) -> tuple[float, float, int]:
    session = await core.new_session()
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    async for event in core.send(session.id, text):
        if isinstance(event, ev.AssistantDelta):
            last = time.perf_counter()
            first = first or last
        elif isinstance(event, ev.LlmCallFinished):
            count = event.output_tokens
    return (first - started) * 1000, (count - 1) / (last - first), count


async def bench(model: Path, tokens: int, rounds: int, data: Path) -> dict[str, list[tuple[float, float, int]]]:
    from llama_cpp import Llama

    raw = Llama(model_path=str(model), n_ctx=N_CTX, n_threads=THREADS, verbose=False)
    settings = load_settings(
        data / "none.toml",
        {
            "paths": {"data_dir": str(data / "shoal")},
            "tools": {
                "workspace": str(data / "ws"),
                "disabled": [
                    "read_file",
                    "list_dir",
                    "write_file",
                    "edit_file",
                    "shell",
                    "remember",
                    "recall",
                    "web_fetch",
                ],
            },
            "model": {"temperature": 0.0, "max_tokens": tokens},
        },
    ).settings
    provider = LlamaCppProvider(str(model), n_ctx=N_CTX, n_threads=THREADS)
    results: dict[str, list[tuple[float, float, int]]] = {"raw": [], "shoal": []}
    async with AgentCore(settings, provider=provider) as core:
        await core.load_model()
        await shoal_run(core, "warm up")  # first call pays one-off costs on both sides
        raw_run(raw, "warm up", 8)
        for r in range(rounds):
            results["raw"].append(await asyncio.to_thread(raw_run, raw, prompt(r), tokens))
            results["shoal"].append(await shoal_run(core, prompt(r)))
    raw.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    # Tool schemas are disabled in Shoal so both sides send the same two messages.
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        model = write_random_model(data / "bench.gguf", n_layers=8, n_embd=512, n_head=8, dtype="f16",
                                   eos_suppressed=True, seed=7)  # fmt: skip
        print(f"model: {model.stat().st_size / 2**20:.0f} MiB, written in {time.perf_counter() - started:.1f} s")
        results = asyncio.run(bench(model, args.tokens, args.rounds, data))
    for side, runs in results.items():
        assert all(n == args.tokens for _, _, n in runs), f"{side} produced {[n for _, _, n in runs]} tokens"
    raw, shoal = results["raw"], results["shoal"]
    # Pairwise per round (raw and Shoal ran back to back on the same prompt), so slow drift cancels out.
    ratios = [s_tps / r_tps for (_, r_tps, _), (_, s_tps, _) in zip(raw, shoal, strict=True)]
    added = [s_ttft - r_ttft for (r_ttft, _, _), (s_ttft, _, _) in zip(raw, shoal, strict=True)]
    median = statistics.median
    print(f"{args.tokens} tokens x {args.rounds} rounds, {THREADS} threads, medians")
    for label, runs in (("raw llama_cpp   ", raw), ("shoal agent loop", shoal)):
        ttft, tps = median(t for t, _, _ in runs), median(s for _, s, _ in runs)
        print(f"  {label}  first token {ttft:7.1f} ms   {tps:7.1f} tokens/s")
    spread = f"rounds {min(ratios):.3f}-{max(ratios):.3f}"
    print(f"  throughput ratio shoal/raw: {median(ratios):.3f} ({spread}; target >= 0.95)")
    spread = f"rounds {min(added):+.1f} to {max(added):+.1f}"
    print(f"  first-token overhead: {median(added):+.1f} ms ({spread}; target < 10 ms)")


if __name__ == "__main__":
    main()
