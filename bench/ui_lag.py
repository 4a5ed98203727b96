"""UI responsiveness: the event loop's delays while an answer streams into the chat pane at 200 tokens/s.

A ticker asks to run every 5 ms on the (qasync) GUI loop and records how late each tick is: that lateness
is what a person feels as stutter. Measured idle (the floor) and while the real ChatPane renders a
scripted 1,000-token answer through the real core and bridge. Target: p99 under 16 ms (one frame).

Run: .venv/bin/python bench/ui_lag.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import qasync
from PySide6.QtWidgets import QApplication

from core.approvals import ApprovalBroker
from core.providers.base import TextDelta
from core.providers.scripted import ScriptedProvider
from core.service import AgentCore
from core.settings import load_settings
from ui.bridge import Bridge
from ui.panes.chat import ChatPane

TOKENS, RATE = 1000, 200  # a 5-second answer
WORDS = ["The", "tide", "turns", "twice", "a", "day", "**and**", "the", "`lighthouse`", "keeper", "logs", "it.\n\n"]


async def ticks(stop: asyncio.Event, period: float = 0.005) -> list[float]:
    loop = asyncio.get_running_loop()
    late: list[float] = []
    while not stop.is_set():
        due = loop.time() + period
        await asyncio.sleep(period)
        late.append(max(0.0, loop.time() - due) * 1000)
    return late


def summary(name: str, late: list[float]) -> None:
    ordered = sorted(late)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"  {name:28s} p50 {statistics.median(ordered):5.1f} ms   p99 {p99:5.1f} ms   max {ordered[-1]:5.1f} ms")


async def main() -> None:
    stop = asyncio.Event()
    idle = asyncio.ensure_future(ticks(stop))
    await asyncio.sleep(2.0)
    stop.set()
    idle_late = await idle
    chunks = [TextDelta(WORDS[i % len(WORDS)] + " ") for i in range(TOKENS)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            Path(tmp) / "c.toml", {"paths": {"data_dir": tmp}, "tools": {"workspace": str(Path(tmp) / "ws")}}
        ).settings
        broker = ApprovalBroker()
        core = AgentCore(settings, provider=ScriptedProvider([chunks], delay=1 / RATE), approve=broker.ask)
        await core.start()
        bridge = Bridge(core, broker)
        pane = ChatPane(bridge)
        pane.resize(900, 700)
        pane.show()
        await pane.start()
        ended = asyncio.Event()
        bridge.turnEnded.connect(lambda *_: ended.set())
        stop = asyncio.Event()
        busy = asyncio.ensure_future(ticks(stop))
        pane.ask("Tell me about the tides.")
        await ended.wait()
        stop.set()
        busy_late = await busy
        await core.stop()
    print(f"event-loop lateness, 5 ms ticker, streaming {TOKENS} tokens at {RATE}/s into the chat pane")
    summary("idle (floor)", idle_late)
    summary("streaming into ChatPane", busy_late)
    print("  target: p99 < 16 ms")


if __name__ == "__main__":
    app = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(main())
