"""Screenshots of the desktop in remote mode, for docs and review: the main window connected to a real
`shoal serve` (an answer streamed, its steps in the timeline, a shell command waiting for approval) and the
settings dialog's Remote tab after a successful Test. Lives with the test fixtures (it runs `served`).

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.ui.remote_screenshots build/screenshots
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "tests.fixtures.memory_keyring.MemoryKeyring")


async def shots(folder: Path) -> None:
    from PySide6.QtWidgets import QApplication

    from app.desktop import DesktopApp
    from app.remote_wiring import wait_connected
    from core.config_file import write_atomically
    from core.providers.scripted import tool_call
    from core.secrets import set_token
    from core.settings import load_settings
    from tests.serve.conftest import served
    from tests.ui.conftest import wait_until

    answer = (
        "High water is at **18:42** today (4.6 m), low water at 12:31.\n\n"
        "The tide turns about twenty minutes after high water."
    )
    steps = [answer, [tool_call("shell", {"command": "ls -la ~/notes/tides"})]]
    async with served(steps, delay=0.01) as server:
        set_token("remote", server.token or "")
        config = Path(os.environ["SHOAL_CONFIG"])
        write_atomically(config, {"remote": {"enabled": True, "url": server.url}, "appearance": {"theme": "light"}})
        loaded = load_settings(config, {})
        desktop = DesktopApp(QApplication.instance(), loaded)  # type: ignore[arg-type]
        try:
            await desktop.start()
            assert desktop.remote is not None
            await wait_connected(desktop.remote)
            window = desktop.window
            ended: list[object] = []
            desktop.bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
            window.chat.ask("When is high water today?")
            await wait_until(lambda: bool(ended), timeout=20)
            window.chat.ask("List my tide notes")
            await wait_until(lambda: bool(window.tools.queue.cards()), timeout=20)
            await asyncio.sleep(0.6)
            folder.mkdir(parents=True, exist_ok=True)
            assert window.grab().save(str(folder / "remote_window.png"))
            desktop.open_settings()
            dialog = desktop._dialogs[-1]
            dialog.tabs.setCurrentWidget(dialog.remote_tab)
            dialog.remote_tab.test_button.click()
            await wait_until(lambda: dialog.remote_tab.test_status.kind == "ok", timeout=10)
            await asyncio.sleep(0.3)
            assert dialog.grab().save(str(folder / "remote_settings.png"))
            dialog.reject()
        finally:
            await desktop.shutdown()


def main() -> int:
    import qasync
    from PySide6.QtWidgets import QApplication

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "build/screenshots").resolve()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="shoal-remote-shots-") as tmp, loop:
        os.environ["SHOAL_CONFIG"] = str(Path(tmp) / "config.toml")
        os.environ["SHOAL_PATHS__DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["SHOAL_TOOLS__WORKSPACE"] = str(Path(tmp) / "workspace")
        loop.run_until_complete(shots(folder))
    print(f"saved {folder / 'remote_window.png'} and {folder / 'remote_settings.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
