"""`shoal chat`: an interactive terminal session on top of the core."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from app import render
from app.wiring import build_core
from core.settings import LoadedSettings
from core.tools.registry import ApprovalCallback

HELP = "/new  start a new session · /sessions  list them · /id  show this one · /quit  leave (or Ctrl+D)"


async def _read_line(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def repl(loaded: LoadedSettings, session: str | None, approve: ApprovalCallback, verbose: bool) -> None:
    async with build_core(loaded, approve) as core:
        with render.err.status(f"Loading {core.provider.model_id}…"):
            await core.load_model()  # a missing or broken model is reported now, not after the first question
        info = await core.sessions.get(session) if session else await core.new_session()
        render.err.print(f"[bold]Shoal[/bold] · {core.provider.model_id} · session {info.id[-8:]}  [dim]{HELP}[/dim]")
        if session:
            for message in (await core.sessions.messages(info.id))[-6:]:
                if message.role in ("user", "assistant") and message.content:
                    render.err.print(f"[dim]{message.role}: {render.short(message.content, 200)}[/dim]")
        loop = asyncio.get_running_loop()
        while True:
            line = await _read_line("\nyou› ")
            if line is None or line.strip() in ("/quit", "/exit"):
                return
            text = line.strip()
            if not text:
                continue
            if text == "/new":
                info = await core.new_session()
                render.err.print(f"[dim]new session {info.id[-8:]}[/dim]")
                continue
            if text == "/sessions":
                for s in await core.sessions.recent(20):
                    render.err.print(f"  {s.id[-8:]}  {s.updated_at[:16]}  {s.title}")
                continue
            if text == "/id":
                render.err.print(info.id)
                continue
            if text.startswith("/"):
                render.err.print(f"[dim]{HELP}[/dim]")
                continue
            sys.stdout.write("shoal› ")
            turn = core.send(info.id, text)
            printer = render.TurnPrinter(verbose=verbose)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGINT, turn.cancel)  # Ctrl+C stops the answer, not the app
            try:
                async for event in turn:
                    printer.handle(event)
            finally:
                printer.close()
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signal.SIGINT)
