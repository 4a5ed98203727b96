"""The embedding model runs in its own process, started on first use and stopped when idle.

Why a process and not a worker thread: importing torch and sentence-transformers takes seconds of mostly
GIL-holding work (and llama.cpp holds the GIL while it loads), which would freeze the desktop; the model
keeps about half a gigabyte that an idle app should give back; and a lower CPU priority (`nice`) keeps
background indexing from slowing the rest of the machine. Vectors cross the pipe as float32 arrays, a few
kilobytes per batch, which costs little next to the model itself (bench/memory.py compares it with a raw
`encode`).

`EmbeddingClient` is the app's side: `embed()` starts the process if needed, one request at a time; a
crashed process is reported as an error and started again on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from core.errors import BugError, ConfigError, ShoalError

log = logging.getLogger(__name__)
READY_TIMEOUT = 180.0  # importing torch on a slow disk, first run
REQUEST_TIMEOUT = 120.0  # plus a second per text: a hung model process is killed, not waited on forever
NICE = 10  # background priority for the model's CPU work


def serve(conn: Connection, backend: str, path: str, threads: int, nice: int) -> None:
    """The child process: load the model, then answer ("embed", texts) until told to stop (None)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    with contextlib.suppress(OSError, AttributeError):
        os.nice(nice)
    try:
        from core.memory.embedder import open_embedder

        embedder = open_embedder(backend, path, threads)
        embedder.load()
    except ShoalError as exc:
        conn.send(("error", type(exc).__name__, exc.message, exc.fix))
        return
    except Exception as exc:
        conn.send(("error", "BugError", f"The embedding model failed to load: {exc}", ""))
        return
    conn.send(("ready", embedder.model_id, embedder.dim))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            conn.send(("ok", embedder.embed(list(request[1]))))
        except Exception as exc:
            conn.send(("error", "BugError", f"Embedding failed: {exc}", ""))


def _error(kind: str, message: str, fix: str) -> ShoalError:
    return ConfigError(message, fix) if kind == "ConfigError" else BugError(message, fix)


class EmbeddingClient:
    """Start/stop are idempotent; `embed` starts the process on demand. One request at a time."""

    def __init__(self, backend: str, path: str, *, threads: int = 1, idle_unload: float = 600.0) -> None:
        self.backend, self.path, self.threads, self.idle_unload = backend, path, threads, idle_unload
        self.model_id = ""
        self.dim = 0
        self.error: ShoalError | None = None
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._pipe = ThreadPoolExecutor(1, thread_name_prefix="shoal-embed-pipe")
        self._last_used = 0.0
        self._idle_task: asyncio.Task[None] | None = None
        self.loads = 0  # how many times the model was started (tests, diagnostics)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def start(self) -> None:
        async with self._lock:
            await self._ensure()

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text. Raises ShoalError (with a fix) when the model cannot run."""
        async with self._lock:
            await self._ensure()
            self._last_used = time.monotonic()
            try:
                reply = await self._call(("embed", texts))
            except (EOFError, OSError, BrokenPipeError, TimeoutError) as exc:
                code = self._process.exitcode if self._process is not None else None
                await self._kill()
                self.error = BugError(
                    f"The embedding process stopped (exit code {code}): {exc}",
                    "It starts again on the next request; see the log if this repeats.",
                )
                raise self.error from exc
            self._last_used = time.monotonic()
        if reply[0] != "ok":
            raise _error(*reply[1:])
        vectors: np.ndarray = reply[1]
        return vectors

    async def _ensure(self) -> None:
        if self.running:
            return
        await self._kill()
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads and Qt
        parent, child = context.Pipe()
        process = context.Process(
            target=serve, args=(child, self.backend, self.path, self.threads, NICE), name="shoal-embedding", daemon=True
        )
        await asyncio.to_thread(process.start)  # spawning blocks for ~50 ms: not on the event loop
        child.close()
        self._process, self._conn = process, parent
        try:
            reply = await asyncio.wait_for(self._receive(), READY_TIMEOUT)
        except (EOFError, OSError, TimeoutError) as exc:
            await self._kill()
            self.error = BugError(
                f"The embedding process did not start: {exc or 'timed out'}",
                "Run `shoal doctor`; see the log for the process's output.",
            )
            raise self.error from exc
        if reply[0] != "ready":
            await self._kill()
            self.error = _error(*reply[1:])
            raise self.error
        _, self.model_id, self.dim = reply
        self.error = None
        self.loads += 1
        log.info("embedding model %s ready (dim %d, pid %s)", self.model_id, self.dim, process.pid)
        if self.idle_unload > 0 and (self._idle_task is None or self._idle_task.done()):
            self._idle_task = asyncio.create_task(self._unload_when_idle(), name="shoal-embed-idle")

    async def _call(self, request: Any) -> Any:
        """Send and receive in one job of the single pipe thread. A caller cancelled meanwhile leaves the job
        running to its end, so the reply is read and the next request never gets a stale answer."""
        conn = self._conn
        assert conn is not None
        timeout = REQUEST_TIMEOUT + len(request[1]) if request else REQUEST_TIMEOUT

        def round_trip() -> Any:
            conn.send(request)
            if not conn.poll(timeout):
                raise TimeoutError(f"no answer from the embedding process within {timeout:.0f} s")
            return conn.recv()

        return await asyncio.get_running_loop().run_in_executor(self._pipe, round_trip)

    async def _receive(self) -> Any:
        conn = self._conn
        assert conn is not None
        return await asyncio.get_running_loop().run_in_executor(self._pipe, conn.recv)

    async def _unload_when_idle(self) -> None:
        while self.running:
            wait = self._last_used + self.idle_unload - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            async with self._lock:
                if time.monotonic() - self._last_used >= self.idle_unload:
                    log.info("embedding model idle for %.0f s: unloading it", self.idle_unload)
                    await self._shutdown(timeout=5)
                    return

    async def _shutdown(self, timeout: float) -> None:
        process, conn = self._process, self._conn
        if process is None:
            return
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        await asyncio.get_running_loop().run_in_executor(None, process.join, timeout)
        await self._kill()

    async def _kill(self) -> None:
        process, conn, self._process, self._conn = self._process, self._conn, None, None
        if conn is not None:
            conn.close()
        if process is not None and process.is_alive():
            process.kill()
            await asyncio.get_running_loop().run_in_executor(None, process.join, 5)

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the process to exit, kill it if it does not within `timeout`."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
            self._idle_task = None
        await self._shutdown(timeout)
        self._pipe.shutdown(wait=False, cancel_futures=True)
        self._pipe = ThreadPoolExecutor(1, thread_name_prefix="shoal-embed-pipe")
