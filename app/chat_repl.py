"""`shoal chat`: an interactive terminal session on top of the core.

Ctrl+C stops the answer being written (the stop is recorded); at the prompt it leaves, as Ctrl+D does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from app import render
from app.terminal import LineReader
from app.wiring import build_core
from core.service import AgentCore, Turn
from core.settings import LoadedSettings
from core.timeline.sessions import SessionInfo

HELP = "/new  start a new session · /sessions  list them · /id  show this one · /quit  leave (or Ctrl+D)"


async def repl(loaded: LoadedSettings, session: str | None, verbose: bool) -> None:
    from app.cli import approval_prompt

    reader = LineReader()
    running: list[Turn] = []

    def on_interrupt() -> None:
        if running and not running[-1].done:
            running[-1].cancel()
        else:
            reader.interrupt()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        async with build_core(loaded, approval_prompt(False, reader)) as core:
            await _converse(core, reader, running, session, verbose)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


async def _converse(
    core: AgentCore, reader: LineReader, running: list[Turn], session: str | None, verbose: bool
) -> None:
    with render.err.status(f"Loading {core.provider.model_id}…"):
        await core.load_model()  # a missing or broken model is reported now, not after the first question
    info = await core.sessions.get(session) if session else await core.new_session()
    render.err.print(f"[bold]Shoal[/bold] · {core.provider.model_id} · session {info.id[-8:]}  [dim]{HELP}[/dim]")
    if session:
        for message in (await core.sessions.messages(info.id))[-6:]:
            if message.role in ("user", "assistant") and message.content:
                render.err.print(f"[dim]{message.role}: {render.short(message.content, 200)}[/dim]")
    while True:
        line = await reader.ask("\nyou› ")
        if line is None or line.strip() in ("/quit", "/exit"):
            return
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            info = await _command(core, text, info)
            continue
        sys.stdout.write("shoal› ")
        turn = core.send(info.id, text)
        running.append(turn)
        printer = render.TurnPrinter(verbose=verbose)
        try:
            async for event in turn:
                printer.handle(event)
        finally:
            printer.close()
            running.clear()


async def _command(core: AgentCore, text: str, info: SessionInfo) -> SessionInfo:
    if text == "/new":
        info = await core.new_session()
        render.err.print(f"[dim]new session {info.id[-8:]}[/dim]")
    elif text == "/sessions":
        for s in await core.sessions.recent(20):
            render.err.print(f"  {s.id[-8:]}  {s.updated_at[:16]}  {s.title}")
    elif text == "/id":
        render.err.print(info.id)
    else:
        render.err.print(f"[dim]{HELP}[/dim]")
    return info
