"""Screenshots of the policy in the desktop for docs and review: a thread on a remote model where a question
labelled confidential is refused (the badge, the inline error and its fix, the label picker), the timeline's
policy rows (allow green, deny red) with a decision's detail, and the Policy pane's Rules, Usage and Check…
tabs and a reload that found a mistake in the file. Real core, scripted model.

    xvfb-run -a .venv/bin/python -m tests.ui.policy_screenshots build/screenshots
    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.ui.policy_screenshots build/screenshots
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("PYTHON_KEYRING_BACKEND", "tests.fixtures.memory_keyring.MemoryKeyring")

POLICY = """\
# Shoal policy (docs/policy.md)
version = 1

[[classify]]
name = "salary-talk"
pattern = "(?i)\\\\b(salary|payroll|bonus)\\\\b"
label = "confidential"

[[rules]]
name = "no-confidential-to-remote"
effect = "deny"
action = "model"
target = "@remote"
max_label = "internal"
description = "confidential and secret data stay with the local model"

[[rules]]
name = "fetch-asks"
effect = "ask"
action = "tool"
target = "web_fetch"
description = "ask before the agent reads a web page"

[[quotas]]
name = "openai-daily"
scope = "provider"
target = "openai:api.openai.com"
tokens = 200000
period = "day"

[[quotas]]
name = "openai-monthly"
scope = "provider"
target = "openai:api.openai.com"
tokens = 3000000
period = "month"
"""
ANSWER = (
    "Tomorrow you have the **dentist at 09:30** and the *sailing club meeting* at 19:00. The rest of the day is free."
)


async def shots(folder: Path, tmp: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from app.desktop import DesktopApp
    from core.providers.scripted import ScriptedProvider
    from core.settings import load_settings

    (tmp / "policy.toml").write_text(POLICY, encoding="utf-8")
    loaded = load_settings(
        tmp / "config.toml",
        {
            "paths": {"data_dir": str(tmp / "data")},
            "tools": {"workspace": str(tmp / "ws")},
            "model": {"provider": "openai", "base_url": "https://api.openai.com/v1", "name": "gpt-4o-mini"},
        },
    )
    provider = ScriptedProvider([ANSWER], model="gpt-4o-mini")
    desktop = DesktopApp(QApplication.instance(), loaded, provider=provider)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        await desktop.start()
        window, chat, bridge = desktop.window, desktop.window.chat, desktop.bridge
        window.resize(1500, 940)
        window.resizeDocks([window.timeline_dock], [640], Qt.Orientation.Horizontal)
        await chat.new_thread()
        ended: list[object] = []
        bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
        chat.composer.set_text("What's on my calendar tomorrow?")
        chat.composer.submit()
        await _until(lambda: len(ended) == 1)
        chat.composer.labels.set_label("confidential")
        chat.composer.set_text("Draft a note to HR about my salary review — the numbers are in review.md.")
        chat.composer.submit()
        await _until(lambda: len(ended) == 2)
        chat.composer.set_text("Then just summarise review.md for me")
        await asyncio.sleep(0.5)
        window.timeline_dock.raise_()
        timeline = window.timeline
        await timeline.reload()
        await asyncio.sleep(0.3)
        timeline.tree.expandAll()
        rows = [timeline.tree.topLevelItem(i) for i in range(timeline.tree.topLevelItemCount())]
        deny = _find(rows, lambda item: item.text(0).startswith("policy · deny"))
        if deny is not None:
            timeline.tree.setCurrentItem(deny)
        await asyncio.sleep(0.3)
        window.grab().save(str(folder / "policy_window.png"))
        timeline_dock = window.timeline_dock
        timeline_dock.setFloating(True)
        timeline_dock.resize(900, 620)
        timeline.splitter.setSizes([300, 320])
        await asyncio.sleep(0.3)
        timeline_dock.grab().save(str(folder / "policy_timeline.png"))
        composer = chat.composer
        composer.grab().save(str(folder / "policy_composer.png"))
        composer.labels.showPopup()
        await asyncio.sleep(0.3)
        composer.labels.view().window().grab().save(str(folder / "policy_label_menu.png"))
        composer.labels.hidePopup()

        dock, pane = window.policy_dock, window.policy
        dock.setFloating(True)
        dock.resize(720, 620)
        dock.show()
        dock.raise_()
        pane.refresh()
        await pane.refresh_usage()
        await asyncio.sleep(0.3)
        rules = pane.rules
        for i in range(rules.topLevelItemCount()):
            if rules.topLevelItem(i).text(1) == "builtin:remote-model":
                rules.setCurrentItem(rules.topLevelItem(i))
        await asyncio.sleep(0.2)
        dock.grab().save(str(folder / "policy_pane_rules.png"))
        pane.tabs.setCurrentIndex(1)
        await pane.refresh_usage()
        await asyncio.sleep(0.2)
        dock.grab().save(str(folder / "policy_pane_usage.png"))
        pane.tabs.setCurrentIndex(2)
        pane.check.set_request("model", "openai:api.openai.com", label="confidential")
        pane.check.run_check()
        await asyncio.sleep(0.2)
        dock.grab().save(str(folder / "policy_pane_check.png"))
        (tmp / "policy.toml").write_text(POLICY.replace('effect = "ask"', 'effect = "prompt"'), encoding="utf-8")
        pane.tabs.setCurrentIndex(0)
        pane.reload()
        await asyncio.sleep(0.2)
        dock.grab().save(str(folder / "policy_pane_error.png"))
        # remote mode, as the bridges see it: a core without a policy of its own (app/remote/core.py)
        from app.remote import RemoteCore

        remote = loaded.settings.model_copy(update={"remote": loaded.settings.remote.model_copy(update={"url": "x"})})
        bridge.policy.core = RemoteCore(remote, desktop.broker)
        bridge.policy.changed.emit()
        dock.resize(560, 300)
        await asyncio.sleep(0.2)
        dock.grab().save(str(folder / "policy_pane_remote.png"))
        chat.composer.grab().save(str(folder / "policy_composer_remote.png"))
    finally:
        await desktop.shutdown()


def _find(items, match):  # type: ignore[no-untyped-def]
    """Depth first, the first row `match` accepts."""
    for item in items:
        if match(item):
            return item
        found = _find([item.child(i) for i in range(item.childCount())], match)
        if found is not None:
            return found
    return None


async def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def main() -> int:
    import qasync

    from app.gui import make_qapp
    from ui.theme import apply_theme

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "build/screenshots")
    app = make_qapp()
    apply_theme(app, "light")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="shoal-policy-shots-") as tmp, loop:
        loop.run_until_complete(shots(folder, Path(tmp)))
    print(f"screenshots in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
