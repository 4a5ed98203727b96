"""`shoal serve` as an operator runs it: a separate process over a real GGUF model, driven by the `openai`
SDK and plain HTTP, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from tests.integration.conftest import PLAIN_REPLY

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Running:
    process: asyncio.subprocess.Process
    url: str
    token: str
    banner: list[str]


@asynccontextmanager
async def shoal_serve(*args: str) -> AsyncIterator[Running]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        cwd=ROOT,
        env={**os.environ, "SHOAL_MODEL__TEMPERATURE": "0"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    banner: list[str] = []
    try:
        while not any(line.startswith("Keep it secret") for line in banner):
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            assert line, "shoal serve exited early:\n" + "\n".join(banner)
            banner.append(line.decode().rstrip())
        url = banner[0].split(" on ", 1)[1].split()[0]
        token = banner[banner.index(next(b for b in banner if b.startswith("Bearer token"))) + 1].strip()
        yield Running(process, url, token, banner)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_answers_the_openai_sdk_over_a_gguf_model_and_stops_cleanly_on_sigterm(plain_model: Path) -> None:
    async with shoal_serve("--model", str(plain_model), "serve", "--port", "0") as server:
        assert server.url.startswith("http://127.0.0.1:") and len(server.token) >= 40
        assert "new, stored in keyring" in "\n".join(server.banner)
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=server.token, max_retries=0)
        stream = await client.chat.completions.create(
            model="shoal", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == PLAIN_REPLY
        await client.close()
        async with httpx.AsyncClient(base_url=server.url) as plain:
            assert (await plain.get("/api/sessions")).status_code == 401
            sessions = (await plain.get("/api/sessions", headers={"Authorization": f"Bearer {server.token}"})).json()
            assert sessions[0]["title"] == "API: hello" and sessions[0]["message_count"] == 2
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), 30) == 0


async def test_serve_refuses_an_exposed_bind_without_a_token() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "serve",
        "--host",
        "0.0.0.0",
        "--no-auth",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 3  # a configuration problem, with what to do
    assert "other machines can reach" in err.decode() and "127.0.0.1" in err.decode()
