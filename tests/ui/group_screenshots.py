"""Screenshots of group mode for docs and review: the Connect-to-group dialog after a Test connection, and the
group pane with three members, all against a real Tansu broker (so it lives with the test fixtures).

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.ui.group_screenshots docs/screenshots
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "tests.fixtures.memory_keyring.MemoryKeyring")


async def shots(folder: Path, tmp: Path) -> None:
    from PySide6.QtWidgets import QApplication

    from core.approvals import ApprovalBroker
    from core.providers.scripted import ScriptedProvider
    from core.service import AgentCore
    from core.settings import load_settings
    from tests.fixtures.cores import scripted_core
    from tests.fixtures.kafka_broker import TansuBroker
    from tests.group.helpers import group_overrides
    from tests.ui.conftest import wait_until
    from ui.bridge import Bridge
    from ui.main_window import MainWindow
    from ui.theme import apply_theme

    apply_theme(QApplication.instance(), "light")
    group = f"team-{uuid.uuid4().hex[:4]}"
    with TansuBroker() as kafka:
        desk = group_overrides(kafka, group, "desk", tmp / "desk",
                               skills=[{"name": "notes", "description": "searches my notes"}],
                               description="the desktop")  # fmt: skip
        desk["tools"] = {"workspace": str(tmp / "ws")}
        loaded = load_settings(tmp / "config.toml", desk)
        broker = ApprovalBroker()
        core = AgentCore(loaded.settings, provider=ScriptedProvider(["hi"]), approve=broker.ask)
        await core.start()
        bridge = Bridge(core, broker, loaded=loaded)
        window = MainWindow(bridge)
        window.resize(1400, 900)
        window.show()
        await window.start()
        peers = [
            ("build-box", [{"name": "coder", "description": "writes and reviews Python", "handler": "echo"},
                           {"name": "tests", "description": "runs the test suite", "handler": "echo"}]),
            ("laptop", [{"name": "summarize", "description": "summarizes long documents", "handler": "echo"}]),
        ]  # fmt: skip
        async with AsyncExitStack() as stack:
            for name, skills in peers:
                over = group_overrides(kafka, group, name, tmp / name, skills=skills)
                await stack.enter_async_context(scripted_core(["hi"], overrides=over))
            pane = window.roster
            await wait_until(lambda: len(pane.table.names()) == 3, timeout=30)
            await asyncio.sleep(1.0)
            pane.resize(980, 330)
            pane.table.selectRow(0)
            assert pane.grab().save(str(folder / "roster.png"))

            window.open_connect_group()
            dialog = window.connect_dialog
            assert dialog is not None
            dialog.test_button.click()
            await wait_until(lambda: not dialog.testing, timeout=30)
            await asyncio.sleep(0.3)
            assert dialog.grab().save(str(folder / "connect-group.png"))
            dialog.reject()
        await bridge.drain()
        await core.stop()


def main() -> int:
    import qasync

    from app.gui import make_qapp

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    app = make_qapp()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="shoal-shots-") as tmp, loop:
        os.environ["SHOAL_CONFIG"] = str(Path(tmp) / "config.toml")
        loop.run_until_complete(asyncio.wait_for(shots(folder, Path(tmp)), 120))
    print(f"saved {folder / 'roster.png'} and {folder / 'connect-group.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
