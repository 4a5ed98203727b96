"""Terminal input for the CLI: one long-lived reader thread that every prompt shares.

`input()` blocks a thread until a line arrives and cannot be interrupted from asyncio. A fresh thread
per prompt therefore leaks: a prompt abandoned by Ctrl+C keeps its thread waiting, which then swallows
the user's next line, and asyncio's shutdown waits for it. Here a single daemon thread reads; a prompt
abandoned half-way leaves its request outstanding, and the next prompt simply takes that line.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from typing import TextIO

_EOF = object()
_INTERRUPT = object()


class LineReader:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[object] = asyncio.Queue()
        self._requests: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._outstanding = False  # a line was asked for and has not arrived yet
        self._closed = False
        threading.Thread(target=self._read, name="shoal-stdin", daemon=True).start()

    def _read(self) -> None:
        while self._requests.get():
            try:
                line: object = input()
            except (EOFError, OSError):
                line = _EOF
            self._loop.call_soon_threadsafe(self._deliver, line)
            if line is _EOF:
                return

    def _deliver(self, line: object) -> None:
        self._outstanding = False
        self._lines.put_nowait(line)

    async def ask(self, prompt: str, out: TextIO = sys.stdout) -> str | None:
        """The next line typed, or None at end of input or after `interrupt()`."""
        if self._closed:
            return None
        out.write(prompt)
        out.flush()
        if not self._outstanding:
            self._outstanding = True
            self._requests.put(True)
        line = await self._lines.get()
        if line is _EOF:
            self._closed = True
        return line if isinstance(line, str) else None

    def interrupt(self) -> None:
        """Make the prompt being waited on return None (Ctrl+C at a prompt)."""
        self._lines.put_nowait(_INTERRUPT)
