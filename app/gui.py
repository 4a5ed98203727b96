"""Starting the desktop app: one QApplication, one qasync loop, one running instance per user.

`shoal` (no command) opens the window; `shoal --quick-ask` opens the quick-ask box, forwarding to the
running instance if there is one (bind it to a desktop shortcut); `shoal --smoke-test OUT.png` proves
the whole stack works, headless if needed, and exits.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ShoalError
from core.settings import LoadedSettings


def _has_display() -> bool:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def make_qapp() -> Any:
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Shoal")
    app.setOrganizationName("shoal")
    app.setDesktopFileName("shoal")
    return app


def run_desktop(loaded: LoadedSettings, *, quick_ask: bool = False, quit_running: bool = False) -> int:
    if not _has_display():
        print(
            "Shoal's window needs a desktop session (no DISPLAY or WAYLAND_DISPLAY is set).\n"
            "  → Run it from your desktop, or use the terminal: `shoal chat`.",
            file=sys.stderr,
        )
        return 2
    import qasync

    from app.wiring import setup_logging
    from ui.single_instance import SingleInstance, default_key

    setup_logging(loaded)
    app = make_qapp()
    instance = SingleInstance(default_key(loaded.config_file))  # one running app per user and config
    if quit_running:
        return 0 if instance.send({"action": "quit"}) else 1
    if not instance.claim():
        sent = instance.send({"action": "quick-ask" if quick_ask else "show"})
        return 0 if sent else 1
    windows: list[Any] = []

    def follow(desktop: Any) -> None:  # the running instance's requests go to the newest window
        if windows:
            instance.messageReceived.disconnect(windows[-1].handle_message)
        windows[:] = [desktop]
        instance.messageReceived.connect(desktop.handle_message)

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        try:
            return int(loop.run_until_complete(run_windows(app, loaded, quick_ask=quick_ask, on_window=follow)))
        except RuntimeError:  # Qt ended the loop (session logout): still stop turns and release everything
            if windows:
                loop.run_until_complete(windows[-1].shutdown())
            return 0
        finally:
            instance.close()


async def run_windows(
    app: Any, loaded: LoadedSettings, *, quick_ask: bool = False, on_window: Callable[[Any], None] | None = None
) -> int:
    """The desktop until it quits; opened again with the saved settings when the window asks for a restart
    (remote mode switched on or off: a different core behind every pane). `on_window` sees each DesktopApp."""
    from app.desktop import DesktopApp
    from app.wiring import setup_logging

    while True:
        desktop = DesktopApp(app, loaded)
        if on_window is not None:
            on_window(desktop)
        code = await desktop.run(quick_ask=quick_ask)
        if not desktop.restart_requested:
            return code
        loaded, quick_ask = desktop.loaded, False
        desktop.dispose()
        setup_logging(loaded)


def run_smoke_test(out: Path, timeout: float = 60.0, *, screenshots: Path | None = None) -> int:
    """Open the main window, run one scripted chat turn through the real core, save a screenshot, exit.
    With `screenshots`, also save the quick-ask box and the settings dialog there (for docs and review)."""
    if not _has_display():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    import tempfile

    import qasync

    from core.settings import load_settings

    app = make_qapp()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="shoal-smoke-") as tmp, loop:
        loaded = load_settings(
            Path(tmp) / "config.toml",
            {"paths": {"data_dir": str(Path(tmp) / "data")}, "tools": {"workspace": str(Path(tmp) / "ws")}},
        )
        try:
            work = _smoke(app, loaded, out, screenshots)
            return int(loop.run_until_complete(asyncio.wait_for(work, timeout)))
        except (TimeoutError, ShoalError, AssertionError) as exc:
            print(f"smoke test failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


async def _settle(seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)  # let layouts and repaints happen before a grab


async def _extra_shots(desktop: Any, folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    box = desktop.quick_ask
    box.popup()
    ended: list[Any] = []
    desktop.bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
    box.ask("What's the tide doing?")
    while not ended:
        await asyncio.sleep(0.02)
    await _settle()
    saved = box.grab().save(str(folder / "quick_ask.png"))
    box.hide()
    desktop.open_settings()
    await _settle()
    dialog = desktop._dialogs[-1]
    saved = dialog.grab().save(str(folder / "settings.png")) and saved
    dialog.reject()
    return bool(saved)


async def _smoke(app: Any, loaded: LoadedSettings, out: Path, screenshots: Path | None = None) -> int:
    from app.desktop import DesktopApp
    from core import events as ev
    from core.providers.scripted import ScriptedProvider

    reply = "Hello from Shoal. The smoke test ran one turn through the real core."
    extra = "The tide is rising: high water at **18:42**, then it turns."
    desktop = DesktopApp(app, loaded, provider=ScriptedProvider([reply, extra]))
    ended: list[Any] = []
    desktop.bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
    await desktop.start()
    desktop.window.chat.ask("Are you there?")
    while not ended:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # let the transcript and timeline repaint
    final = ended[0]
    ok = isinstance(final, ev.TurnFinished) and final.status == "ok" and final.text == reply
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = desktop.window.grab().save(str(out))
    if screenshots is not None:
        saved = await _extra_shots(desktop, screenshots) and saved
    await desktop.shutdown()
    print(f"smoke test {'passed' if ok and saved else 'FAILED'}: screenshot {out}", file=sys.stderr)
    return 0 if ok and saved else 1


def run_startup_probe() -> int:
    """For bench/startup.py and the startup test: time to the first shown window, memory, heavy imports."""
    import json
    import resource
    import tempfile
    import time

    from PySide6.QtCore import QTimer

    if not _has_display():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    started = float(os.environ.get("SHOAL_PROBE_T0", "0")) or time.time()
    import qasync

    from core.settings import load_settings

    app = make_qapp()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shoal-probe-") as tmp, loop:
        loaded = load_settings(
            Path(tmp) / "config.toml",
            {"paths": {"data_dir": str(Path(tmp) / "data")}, "tools": {"workspace": str(Path(tmp) / "ws")}},
        )
        from app.desktop import DesktopApp

        desktop = DesktopApp(app, loaded)
        desktop.window.show()
        app.processEvents()  # the first paint

        def measured() -> None:
            result["first_window_s"] = time.time() - started
            result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            heavy = ("torch", "sentence_transformers", "llama_cpp", "aiokafka", "mcp", "openai", "numpy")
            result["heavy_modules"] = [m for m in heavy if m in sys.modules]
            desktop.quit()

        QTimer.singleShot(0, measured)
        loop.run_until_complete(desktop.quit_event.wait())
        desktop.window.close()
    print(json.dumps(result))
    return 0
