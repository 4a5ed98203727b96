"""The group pane in the real main window: empty state, a core joined to the real broker listing itself and a
second in-process core that joins and leaves, the offline header, connecting through the dialog, dispatching
a task to a peer's skill, and the group rows that dispatch leaves in the timeline."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from core import config_file
from core.settings import load_settings
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker
from tests.group.helpers import group_overrides
from tests.ui.conftest import scripted_bridge, wait_until
from tests.ui.test_timeline_pane import rows
from ui.bridge import Bridge
from ui.dialogs.connect_group import ConnectGroupDialog
from ui.dialogs.dispatch import DispatchDialog
from ui.main_window import MainWindow
from ui.panes.timeline import ALL_THREADS
from ui.widgets.roster_table import Col


@asynccontextmanager
async def window_over(overrides: dict[str, Any] | None = None) -> AsyncIterator[tuple[MainWindow, Bridge]]:
    async with scripted_bridge(["hi"], overrides=overrides) as (bridge, _):
        window = MainWindow(bridge)
        window.resize(1400, 900)
        window.show()
        await window.start()
        yield window, bridge


def new_group() -> str:
    return f"g{uuid.uuid4().hex[:8]}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_group_mode_off_shows_one_button_that_opens_the_dialog() -> None:
    async with window_over() as (window, _):
        pane = window.roster
        assert pane.stack.currentWidget() is pane.empty_page and pane.header.isHidden()
        assert "Group mode is off" in pane.off_label.text()
        assert window._status_group.isHidden()
        window.group_dock.show()
        window.group_dock.raise_()
        pane.connect_button.click()
        dialog = window.connect_dialog
        assert isinstance(dialog, ConnectGroupDialog) and dialog.isVisible()
        assert not dialog.disconnect_button.isEnabled()
        window.connect_group_action.trigger()  # one dialog at a time
        assert window.connect_dialog is dialog
        dialog.reject()
        await wait_until(lambda: window.connect_dialog is None)


async def test_the_roster_lists_this_agent_then_a_peer_that_joins_and_leaves(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    group = new_group()
    async with window_over(group_overrides(kafka_broker, group, "alice", tmp_path / "a")) as (window, bridge):
        pane = window.roster
        await wait_until(lambda: pane.table.names() == ["alice"], timeout=20, message="alice is not listed")
        assert pane.state == "online" and pane.stack.currentWidget() is pane.table_page
        assert "Online" in pane.state_label.text() and group in pane.state_label.text()
        assert "Group: Online" in window._status_group.text() and window._status_group.isVisible()
        assert pane.table.item(0, Col.NAME).text() == "alice  (this agent)"
        assert pane.table.item(0, Col.NAME).font().bold()
        assert pane.table.item(0, Col.ID).text() == bridge.core.group.node.agent_id[:12]
        assert pane.error.isHidden()

        echo = {"name": "echo", "description": "says it back", "handler": "echo"}
        bob_over = group_overrides(kafka_broker, group, "bob", tmp_path / "b", skills=[echo])
        async with scripted_core(["hi"], overrides=bob_over) as (bob, _):
            await wait_until(lambda: pane.table.names() == ["alice", "bob"], timeout=20, message="bob never appeared")
            assert pane.table.item(1, Col.SKILLS).text() == "echo"
            assert pane.table.item(1, Col.STATUS).text() == "idle"
            assert "says it back" in pane.table.item(1, Col.NAME).toolTip()
            assert pane.count_label.text().startswith("2 members (1 besides this agent)")
            await bob.group.node.wait_online(15)
            await dispatch_echo(pane, "ping from the pane")
            await timeline_shows_the_remote_task(window)
        await wait_until(lambda: pane.table.names() == ["alice"], timeout=15, message="bob did not leave")


async def dispatch_echo(pane: Any, text: str) -> None:
    pane.table.selectRow(1)
    pane.open_dispatch()
    [dialog] = pane.dialogs()
    assert isinstance(dialog, DispatchDialog)
    assert dialog.target.currentData() == ("skill", "echo"), "the selected member's skill is picked"
    assert [dialog.target.itemText(i) for i in range(dialog.target.count())] == ["Skill echo (bob)", "Agent bob"]
    dialog.text.setPlainText(text)
    dialog.send_button.click()
    assert dialog.running and not dialog.send_button.isEnabled()
    await wait_until(lambda: bool(dialog.results), timeout=25, message=dialog.status.plain)
    assert dialog.results[0].status == "ok" and dialog.answer.toPlainText() == text
    assert dialog.status.plain.startswith("✓ Answered by bob")
    await wait_until(lambda: not dialog.running)
    dialog.reject()


async def timeline_shows_the_remote_task(window: MainWindow) -> None:
    timeline = window.timeline
    timeline.scope_combo.setCurrentText(ALL_THREADS)
    await timeline.settle()

    def labels() -> list[str]:
        return [item.text(0) for item in rows(timeline.tree)]

    await wait_until(lambda: any(x.startswith("← task.result from bob (ok)") for x in labels()), timeout=10)
    assert "→ task.request to skill echo “ping from the pane”" in labels()
    timeline.filter_combo.setCurrentText("Group")
    shown = [item.text(0) for item in rows(timeline.tree) if not item.isHidden()]
    assert shown and all(x[0] in "→←✕" for x in shown), shown


async def test_an_unreachable_broker_shows_offline_with_the_error_and_what_to_do(tmp_path: Path) -> None:
    over = {
        "group": {
            "enabled": True,
            "name": new_group(),
            "bootstrap_servers": [f"127.0.0.1:{closed_port()}"],
            "agent_name": "alice",
            "client": dict(TEST_CLIENT_SETTINGS),
        }
    }
    async with window_over(over) as (window, _):
        pane = window.roster
        await wait_until(lambda: pane.state == "offline", timeout=20, message=f"state stayed {pane.state}")
        assert "Offline" in pane.state_label.text() and "127.0.0.1" in pane.state_label.text()
        assert pane.error.isVisible() and pane.error.kind == "error" and "→" in pane.error.plain
        assert "Group: Offline" in window._status_group.text()
        assert pane.table.rowCount() == 0 and "No member has announced" in pane.count_label.text()
        assert not pane.dispatch_button.isEnabled()


async def test_connecting_from_the_dialog_joins_and_lists_this_agent(kafka_broker: TansuBroker) -> None:
    group = new_group()
    fast = {"group": {"client": dict(TEST_CLIENT_SETTINGS), "heartbeat_interval": 0.5}}
    async with window_over(fast) as (window, bridge):
        window.connect_group_action.trigger()
        dialog = window.connect_dialog
        assert isinstance(dialog, ConnectGroupDialog)
        dialog.servers.setText(kafka_broker.bootstrap)
        dialog.group_name.setText(group)
        dialog.agent_name.setText("desk")
        dialog.description.setText("the desktop")
        dialog.skills.add_row("review", "reads diffs")
        dialog.connect_button.click()
        pane = window.roster
        await wait_until(lambda: pane.table.names() == ["desk"], timeout=20, message=f"state {pane.state}")
        assert window.connect_dialog is None and window.group_dock.isVisible()
        assert pane.table.item(0, Col.SKILLS).text() == "review" and pane.state == "online"
        saved = config_file.read(load_settings().config_file)["group"]
        assert saved["enabled"] is True and saved["name"] == group
        assert saved["bootstrap_servers"] == [kafka_broker.bootstrap] and saved["agent_name"] == "desk"
        assert "client" not in saved, "settings the dialog does not show are not written"
        assert bridge.core.settings.group.heartbeat_interval == 0.5, "command-line overrides survive the reload"


async def test_the_settings_dialog_opens_the_connect_dialog_over_itself() -> None:
    from PySide6.QtWidgets import QApplication

    from app.desktop import DesktopApp
    from core.providers.scripted import ScriptedProvider
    from ui.dialogs.settings import SettingsDialog

    desktop = DesktopApp(QApplication.instance(), load_settings(None, {}), provider=ScriptedProvider(["hi"]))  # type: ignore[arg-type]
    try:
        await desktop.start(show=False)
        desktop.open_settings()
        [settings] = [d for d in desktop._dialogs if isinstance(d, SettingsDialog)]
        settings.group_button.click()
        dialog = desktop.window.connect_dialog
        assert isinstance(dialog, ConnectGroupDialog) and dialog.isVisible()
        assert dialog.parent() is settings, "a child of the window-modal settings dialog, so it takes input"
        dialog.reject()
        settings.reject()
    finally:
        await desktop.shutdown()
