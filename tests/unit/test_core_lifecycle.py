"""AgentCore and Turn lifecycles: nothing keeps running, nothing is left half-recorded."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

from core import events as ev
from core.providers.base import TextDelta
from tests.fixtures.cores import scripted_core

DEMO = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_demo_server.py")
ENDLESS = [TextDelta("word ") for _ in range(5000)]


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


async def test_a_turn_cancelled_before_it_starts_still_ends() -> None:
    async with scripted_core(["never"]) as (core, _):
        session = await core.new_session()
        turn = core.send(session.id, "hi")
        turn.cancel()  # before the task ran a single step
        events = await asyncio.wait_for(_drain(turn), 2)
        assert events == []


async def _drain(turn) -> list[ev.AgentEvent]:  # type: ignore[no-untyped-def]
    return [e async for e in turn]


async def test_a_reader_that_is_cancelled_cancels_the_turn_and_it_is_recorded() -> None:
    async with scripted_core([ENDLESS], delay=0.005) as (core, _):
        session = await core.new_session()
        turn = core.send(session.id, "talk")

        async def reader() -> None:
            async for _ in turn:
                pass

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert turn.done
        ends = await core.timeline.events(session_id=session.id, kind="turn.end")
        assert [e.status for e in ends] == ["cancelled"]


async def test_stopping_the_core_cancels_running_turns_and_records_it() -> None:
    async with scripted_core([ENDLESS], delay=0.005) as (core, _):
        session = await core.new_session()
        turn = core.send(session.id, "talk")
        await asyncio.sleep(0.1)
        await asyncio.wait_for(core.stop(), 5)
        assert turn.done and isinstance(turn.final, ev.TurnFinished) and turn.final.status == "cancelled"
    # reopen the same database: the stop is on disk
    async with scripted_core([]) as (again, _):
        ends = await again.timeline.events(session_id=session.id, kind="turn.end")
        assert [e.status for e in ends] == ["cancelled"]


async def test_a_cancelled_start_leaves_no_mcp_server_running() -> None:
    marker = f"--marker={uuid.uuid4().hex}"
    servers = [
        {"name": "demo", "command": sys.executable, "args": [DEMO, marker]},
        {"name": "slow", "command": sys.executable, "args": ["-c", "import time; time.sleep(60)", marker]},
    ]
    from core.service import AgentCore
    from core.settings import load_settings

    core = AgentCore(load_settings(None, {"mcp_servers": servers}).settings)
    start = asyncio.create_task(core.start())
    for _ in range(100):  # wait until both servers are spawned
        await asyncio.sleep(0.05)
        if len(processes_with(marker)) >= 2:
            break
    await asyncio.sleep(1.0)  # the demo server has connected by now
    start.cancel()
    await asyncio.gather(start, return_exceptions=True)
    for _ in range(100):
        if not processes_with(marker):
            break
        await asyncio.sleep(0.1)
    assert processes_with(marker) == []
    assert not core.db.running
