"""Screenshots of the Schedule pane for docs and review: four jobs after Shoal was closed for three days (a
catch-up run and a missed row, a skipped interval, a failed Run now, a one-off, a job switched off), in the main
window and on its own, and the New-job dialog with its preview. Real core, scripted model.

    xvfb-run -a .venv/bin/python -m tests.ui.schedule_screenshots build/screenshots
    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.ui.schedule_screenshots build/screenshots
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("PYTHON_KEYRING_BACKEND", "tests.fixtures.memory_keyring.MemoryKeyring")

DIGEST = (
    "Three unread notes since Friday: the plumber can come Tuesday at 10:00; the tide table for the weekend "
    "is in ‘Sailing’; the Lisbon tickets arrived."
)


async def shots(folder: Path, tmp: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from app.desktop import DesktopApp
    from core.errors import EndpointUnreachableError
    from core.providers.scripted import ScriptedProvider
    from core.schedule.clock import local_zone
    from core.settings import load_settings
    from tests.fixtures.schedule import FakeClock, attach_scheduler

    down = EndpointUnreachableError(
        "The endpoint http://127.0.0.1:11434/v1 is not answering.", "Start Ollama, or check model.base_url."
    )
    loaded = load_settings(
        tmp / "config.toml", {"paths": {"data_dir": str(tmp / "data")}, "tools": {"workspace": str(tmp / "ws")}}
    )
    desktop = DesktopApp(QApplication.instance(), loaded, provider=ScriptedProvider([DIGEST, down]))  # type: ignore[arg-type]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = FakeClock(now - timedelta(days=3, minutes=-17))  # an interval's phase that does not fall on now
    try:
        await desktop.start()
        await desktop.core.schedule.stop()
        scheduler = attach_scheduler(desktop.core, clock, zone=local_zone(), poll=0.05)
        bridge = desktop.bridge.schedule
        bridge.sync()
        notes = await scheduler.add_job("Summarise my unread notes", cron="0 8 * * *", name="Morning notes")
        build = await scheduler.add_job("Check the build log for failures", every="2h", name="Build log",
                                        catch_up="skip", notify=False)  # fmt: skip
        await scheduler.add_job("Remind me to renew the passport", at=(now + timedelta(days=9)).strftime(
            "%Y-%m-%d 09:00"), name="Passport renewal")  # fmt: skip
        weekly = await scheduler.add_job("Write my weekly review from this week's threads", cron="0 17 * * 5",
                                         name="Weekly review")  # fmt: skip
        await scheduler.set_enabled(weekly.id, False)
        clock.now = now  # Shoal was closed for three days
        await scheduler.start()
        bridge.stateChanged.emit()
        runs = await _wait(scheduler, lambda runs: any(r.status == "ok" for r in runs))
        assert any(r.status == "missed" for r in runs), runs
        await scheduler.run_now(build.id)
        window, pane = desktop.window, desktop.window.schedule
        window.resize(1500, 940)
        window.schedule_dock.show()
        window.schedule_dock.raise_()
        window.resizeDocks([window.timeline_dock], [620], Qt.Orientation.Horizontal)
        window.resizeDocks([window.timeline_dock, window.tools_dock], [330, 560], Qt.Orientation.Vertical)
        await window.chat.open_session(notes.session_id)
        await pane.reload()
        await asyncio.sleep(0.4)
        folder.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(folder / "schedule_window.png"))
        dock = window.schedule_dock
        dock.setFloating(True)
        dock.resize(760, 600)
        await asyncio.sleep(0.3)
        await pane.reload()
        await asyncio.sleep(0.2)
        dock.grab().save(str(folder / "schedule_pane.png"))
        dialog = pane.open_editor(None)
        dialog.prompt.setPlainText("Summarise my unread notes and list what needs an answer today.")
        dialog.name.setText("Morning notes")
        dialog.preset.activated.emit(1)
        await asyncio.sleep(0.3)
        dialog.grab().save(str(folder / "schedule_dialog.png"))
        dialog.reject()
    finally:
        await desktop.shutdown()


async def _wait(scheduler, condition):  # type: ignore[no-untyped-def]
    for _ in range(500):
        runs = await scheduler.runs(limit=100)
        if condition(runs):
            return runs
        await asyncio.sleep(0.01)
    raise AssertionError("no run")


def main() -> int:
    import qasync

    from app.gui import make_qapp
    from ui.theme import apply_theme

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "build/screenshots")
    app = make_qapp()
    apply_theme(app, "light")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="shoal-schedule-shots-") as tmp, loop:
        loop.run_until_complete(shots(folder, Path(tmp)))
    print(f"screenshots in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
