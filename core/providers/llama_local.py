"""A local GGUF model through llama-cpp-python.

llama.cpp blocks, so generation runs in a worker thread that hands each chunk to the event loop; the
loop never waits on the model. Cancelling the consumer sets a flag the worker checks between tokens,
so generation stops within one token. One model instance serves one generation at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from core.errors import ContextOverflowError, ModelFileError, ProviderError, ShoalError
from core.providers.base import (
    ChatMessage,
    Chunk,
    GenerationOptions,
    Provider,
    TextDelta,
    ToolCallDelta,
    Usage,
    chat_request,
)
from core.providers.gguf_file import check_model_file
from core.providers.tool_text import ToolTagParser
from core.tools.registry import ToolSpec

_DONE = object()
log = logging.getLogger(__name__)


def default_threads() -> int:
    """llama.cpp is fastest on physical cores; assume SMT pairs above four logical CPUs."""
    logical = os.cpu_count() or 1
    return logical if logical <= 4 else logical // 2


def _count_tokens(n_tokens: int, prompt_tokens: int | None, chunks: int, finish: str) -> tuple[int, int]:
    """(prompt, completion) tokens from llama.cpp's context length. Chunks undercount (a character spanning
    several tokens arrives as one chunk); the context counts every evaluated token. The last sampled token is
    evaluated only if generation went on, so it is added back unless the model ended its turn itself."""
    if prompt_tokens is None:  # nothing was generated
        return n_tokens, 0
    generated = n_tokens - prompt_tokens + (0 if finish == "stop" else 1)
    return prompt_tokens, max(generated, chunks)


class LlamaCppProvider(Provider):
    name = "llama_cpp"

    def __init__(
        self,
        path: str,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_gpu_layers: int = 0,
        chat_format: str = "",
        parse_tool_tags: bool = True,
    ) -> None:
        self.path_text = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.n_gpu_layers = n_gpu_layers
        self.chat_format = chat_format or None
        self._parse_tool_tags = parse_tool_tags
        self._llm: Any = None
        self._load_lock = asyncio.Lock()
        self._run_lock = threading.Lock()  # llama.cpp contexts are not thread-safe
        self._stragglers: set[asyncio.Future[None]] = set()

    @property
    def model_id(self) -> str:
        return Path(self.path_text).name or "gguf"

    @property
    def context_window(self) -> int | None:
        return self.n_ctx

    async def start(self) -> None:
        async with self._load_lock:
            if self._llm is None:
                path = check_model_file(self.path_text)
                started = time.perf_counter()
                self._llm = await asyncio.to_thread(self._load, path)
                log.info(
                    "loaded %s in %.0f ms (n_ctx=%d, threads=%d)",
                    path,
                    (time.perf_counter() - started) * 1000,
                    self.n_ctx,
                    self.n_threads,
                )

    def _load(self, path: Path) -> Any:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # spinning OpenMP threads starve everything else
        from llama_cpp import Llama

        try:
            return Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_gpu_layers=self.n_gpu_layers,
                chat_format=self.chat_format,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelFileError(
                f"llama.cpp could not load {path}: {exc}",
                "The file may be truncated, corrupt, or of an architecture this llama.cpp does not support; "
                "download it again or choose another model.",
            ) from exc

    async def stop(self) -> None:
        if self._stragglers:  # let cancelled generations finish before the model goes away
            await asyncio.gather(*self._stragglers, return_exceptions=True)
        async with self._load_lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(self._close, llm)

    def _close(self, llm: Any) -> None:
        with self._run_lock:
            llm.close()

    async def stream(
        self, messages: list[ChatMessage], tools: list[ToolSpec], options: GenerationOptions
    ) -> AsyncIterator[Chunk]:
        await self.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        request = chat_request(messages, tools, options)
        worker = loop.run_in_executor(None, self._generate, request, cancel, loop, queue)
        parser = ToolTagParser() if self._parse_tool_tags else None
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Usage):
                    if parser is not None:
                        for out in parser.finish():
                            yield out
                        if parser.calls_found:
                            item = Usage(item.input_tokens, item.output_tokens, "tool_calls")
                    yield item
                elif parser is not None and isinstance(item, TextDelta):
                    for out in parser.feed(item.text):
                        yield out
                else:
                    yield item
        finally:
            cancel.set()
            if not worker.done():
                # The worker stops at its next token. The caller does not wait for it: a long prompt
                # evaluation cannot be interrupted, and the run lock already keeps the next call behind it.
                self._stragglers.add(worker)
                worker.add_done_callback(self._stragglers.discard)

    def _generate(
        self,
        request: dict[str, Any],
        cancel: threading.Event,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Any],
    ) -> None:
        """Worker thread: pull chunks from llama.cpp and post them to the loop."""

        def post(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            with self._run_lock:
                for chunk in self._chunks(request, cancel):
                    post(chunk)
        except ShoalError as exc:
            post(exc)
        except Exception as exc:
            post(self.translate(exc))
        finally:
            post(_DONE)

    def _chunks(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[Chunk]:
        llm = self._llm
        if llm is None:
            raise ProviderError("The model was unloaded during generation.", "Retry.")
        produced, finish, prompt_tokens = 0, "stop", None
        stream = llm.create_chat_completion(**request)
        try:
            for event in stream:
                if prompt_tokens is None:  # the prompt is evaluated; generated tokens are not yet
                    prompt_tokens = int(llm.n_tokens)
                if cancel.is_set():
                    finish = "cancelled"
                    break
                choice = event["choices"][0]
                delta = choice.get("delta") or {}
                finish = choice.get("finish_reason") or finish
                for call in delta.get("tool_calls") or []:
                    fn = call.get("function") or {}
                    yield ToolCallDelta(call.get("index", 0), call.get("id"), fn.get("name"), fn.get("arguments") or "")
                if delta.get("content"):
                    produced += 1
                    yield TextDelta(delta["content"])
        finally:
            stream.close()  # releases llama.cpp's generation state promptly
        yield Usage(*_count_tokens(int(llm.n_tokens), prompt_tokens, produced, finish), finish)

    def translate(self, exc: BaseException) -> ShoalError:
        text = str(exc)
        if "exceed context window" in text or "context window" in text:
            return ContextOverflowError(
                f"The conversation does not fit {self.model_id}'s context window of {self.n_ctx} tokens: {text}",
                "Start a new session, shorten the message, or raise model.n_ctx (uses more memory).",
            )
        if "llama_decode returned" in text:
            return ProviderError(
                f"llama.cpp stopped decoding ({text}); the context filled up, often because the model produced "
                "broken UTF-8 and ignored max_tokens.",
                "Retry, start a new session, or raise model.n_ctx.",
            )
        return ProviderError(f"llama.cpp failed: {type(exc).__name__}: {text}", "Check the model file and settings.")
