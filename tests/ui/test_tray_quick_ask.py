"""The quick-ask box against the real core, the tray icon where no tray exists, the icons and .desktop entry."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QSystemTrayIcon

from tests.ui.conftest import scripted_bridge, wait_until
from ui import icons
from ui.quick_ask import SESSION_TITLE, QuickAskBox
from ui.tray import SCHEDULER_PENDING_TIP, Tray

ANSWER = (
    "Tides come from the Moon's pull on the oceans: the water nearest the Moon bulges towards it, "
    "and the water on the far side is left behind, so most coasts see two high tides a day."
)


# --- the quick-ask box ---------------------------------------------------------------------------


async def test_quick_ask_streams_the_answer_in_place_and_hands_the_session_over() -> None:
    async with scripted_bridge([ANSWER, "Twice, roughly every 12 hours 25 minutes."], delay=0.01) as (bridge, _):
        box = QuickAskBox(bridge)
        box.popup()
        assert box.isVisible() and box.focusWidget() is box.input
        assert not box.open_button.isEnabled()  # nothing to open yet

        QTest.keyClicks(box.input, "Why are there tides?")
        QTest.keyClick(box.input, Qt.Key.Key_Return)

        # mid-stream: part of the answer is on screen, and Stop replaces Ask
        await wait_until(lambda: 0 < len(box.answer_text) < len(ANSWER) // 2, message="no partial answer")
        partial = box.answer_view.toPlainText()
        assert partial and ANSWER.startswith(partial) and len(partial) < len(ANSWER)
        assert box.stop_button.isVisibleTo(box) and not box.ask_button.isVisibleTo(box)
        assert "Answering" in box.status.text()

        await wait_until(lambda: not box.busy, message="the answer never finished")
        assert box.answer_view.toPlainText() == ANSWER
        assert box.ask_button.isVisibleTo(box) and not box.stop_button.isVisibleTo(box)
        status = box.status.text()
        assert status.startswith("scripted · ") and " in · " in status and " out · " in status

        # "Open in main window" hands over the session that holds the question and the answer
        opened: list[str] = []
        box.openInMainWindow.connect(opened.append)
        assert box.open_button.isEnabled()
        box.open_button.click()
        assert opened == [box.session_id] and not box.isVisible()
        question, answer = await bridge.transcript(opened[0])
        assert (question.message.role, question.message.content) == ("user", "Why are there tides?")
        assert (answer.message.role, answer.message.content) == ("assistant", ANSWER)

        # Esc hides
        box.popup()
        assert box.isVisible() and box.input.selectedText() == "Why are there tides?"  # typing replaces it
        QTest.keyClick(box.input, Qt.Key.Key_Escape)
        assert not box.isVisible()

        # a second question goes to the same session, with the first as context
        first_session = box.session_id
        assert first_session is not None
        box.popup()
        QTest.keyClicks(box.input, "How often?")  # replaces the selected question
        assert box.input.text() == "How often?"
        QTest.keyClick(box.input, Qt.Key.Key_Return)
        await wait_until(lambda: box.answer_text == "Twice, roughly every 12 hours 25 minutes." and not box.busy)
        assert box.session_id == first_session
        transcript = await bridge.transcript(first_session)
        assert [e.message.content for e in transcript] == [
            "Why are there tides?",
            ANSWER,
            "How often?",
            "Twice, roughly every 12 hours 25 minutes.",
        ]
        assert [s.title for s in await bridge.sessions()].count(SESSION_TITLE) == 1


async def test_quick_ask_stops_and_ignores_other_sessions() -> None:
    long_answer = "word " * 60
    async with scripted_bridge(["Elsewhere, unrelated.", long_answer, "Yes."], delay=0.02) as (bridge, _):
        box = QuickAskBox(bridge)
        # nothing typed: nothing asked, no session made
        assert box.ask() is None and box.session_id is None

        other = await bridge.new_session("Main chat")
        bridge.send(other.id, "hi")
        await wait_until(lambda: not bridge.is_busy(other.id))
        assert box.answer_text == "" and not box.answer_view.isVisibleTo(box)

        task = box.ask("Count words")
        assert task is not None and box.input.text() == "Count words"
        assert box.ask("again") is None  # one question at a time
        await task
        assert box.session_id != other.id
        await wait_until(lambda: len(box.answer_text) > 20)
        box.stop_button.click()
        await wait_until(lambda: not box.busy, message="Stop did not stop the answer")
        assert box.status.text().startswith("Stopped")
        assert 0 < len(box.answer_text) < len(long_answer)
        assert box.ask_button.isVisibleTo(box)

        # a quick-ask session deleted in the main window is replaced by a new one
        stopped_session = box.session_id
        assert stopped_session is not None
        await bridge.delete_session(stopped_session)
        task = box.ask("Still there?")
        assert task is not None
        await task
        await wait_until(lambda: box.answer_text == "Yes." and not box.busy)
        assert box.session_id not in (None, stopped_session)

        # Ctrl+N starts a fresh quick-ask session on the next question
        QTest.keyClick(box.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
        assert box.session_id is None and box.input.text() == "" and not box.answer_view.isVisibleTo(box)


async def test_quick_ask_reports_a_failed_turn() -> None:
    from core.errors import ProviderError

    failure = ProviderError("The model server is not answering.", "Start it, or pick another model in Settings.")
    async with scripted_bridge([failure]) as (bridge, _):
        box = QuickAskBox(bridge)
        task = box.ask("hello?")
        assert task is not None
        await task
        await wait_until(lambda: not box.busy)
        assert "not answering" in box.status.text()
        assert "Couldn't answer" in box.answer_view.toPlainText()


async def test_quick_ask_points_to_the_main_window_for_approvals() -> None:
    from core.providers.scripted import tool_call
    from core.tools.registry import ApprovalDecision

    async with scripted_bridge([[tool_call("shell", {"command": "echo hi"})], "It printed hi."]) as (bridge, _):
        box = QuickAskBox(bridge)
        opened: list[str] = []
        box.openInMainWindow.connect(opened.append)
        box.popup()
        box.ask("run echo hi")
        await wait_until(lambda: bool(bridge.pending_approvals()))
        assert box.status.text() == "Needs your approval in the main window: echo hi"
        QTest.keyClick(box.input, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
        assert opened == [box.session_id] and not box.isVisible()
        [pending] = bridge.pending_approvals()
        bridge.resolve_approval(pending.id, ApprovalDecision.APPROVE_ONCE)
        await wait_until(lambda: not box.busy)
        assert box.answer_text == "It printed hi."


# --- the tray ------------------------------------------------------------------------------------


async def test_tray_without_a_system_tray() -> None:
    assert not QSystemTrayIcon.isSystemTrayAvailable()  # offscreen: there is none
    tray = Tray(icons.tray_icon())
    assert tray.available is False
    assert tray.show() is False
    assert not tray.visible
    assert tray.notify("Shoal", "hello") is False
    tray.set_tooltip("Shoal — busy")  # harmless without an icon
    tray.hide()


async def test_tray_menu_actions_emit_their_signals() -> None:
    tray = Tray(icons.app_icon())
    menu = [a.text() for a in tray.menu.actions() if not a.isSeparator()]
    assert menu == ["Quick ask", "Show Shoal", "Pause scheduler", "Quit"]

    seen: list[str] = []
    tray.quickAskRequested.connect(lambda: seen.append("quick-ask"))
    tray.showRequested.connect(lambda: seen.append("show"))
    tray.quitRequested.connect(lambda: seen.append("quit"))
    tray.pauseToggled.connect(lambda paused: seen.append(f"pause={paused}"))

    tray.quick_ask_action.trigger()
    tray.show_action.trigger()
    tray.quit_action.trigger()
    assert seen == ["quick-ask", "show", "quit"]

    # the scheduler does not exist yet: the item says so and does nothing
    assert tray.pause_action.isCheckable() and not tray.pause_action.isEnabled()
    assert tray.pause_action.toolTip() == SCHEDULER_PENDING_TIP
    tray.pause_action.trigger()
    assert seen == ["quick-ask", "show", "quit"] and not tray.pause_action.isChecked()
    tray.set_scheduler_available(True)
    tray.pause_action.trigger()
    tray.pause_action.trigger()
    assert seen[3:] == ["pause=True", "pause=False"]

    # clicks on the icon; a left click shows the window when nobody handles toggling
    seen.clear()
    tray._on_activated(QSystemTrayIcon.ActivationReason.Trigger)
    assert seen == ["show"]
    seen.clear()
    tray.toggleRequested.connect(lambda: seen.append("toggle"))
    Reason = QSystemTrayIcon.ActivationReason
    for reason in (Reason.Trigger, Reason.DoubleClick, Reason.MiddleClick, Reason.Context):
        tray._on_activated(reason)
    assert seen == ["toggle", "show", "quick-ask"]


# --- icons and the desktop entry -----------------------------------------------------------------


async def test_app_icon_has_every_size() -> None:
    icon = icons.app_icon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= set(icons.APP_ICON_SIZES)
    for size in icons.APP_ICON_SIZES:
        image = QImage(str(icons.icon_png_path(size)))
        assert image.size() == QSize(size, size)
    # opaque teal/blue in the middle of the tile, transparent in the rounded-off corner
    big = QImage(str(icons.icon_png_path(256)))
    assert big.pixelColor(4, 4).alpha() == 0
    centre = big.pixelColor(128, 236)
    assert centre.alpha() == 255 and centre.blue() > centre.red()


async def test_tray_variant_is_one_colour() -> None:
    svg = icons.resource_path("icons", "shoal-tray.svg")
    image = icons.render_svg(svg, 32, QColor("#ffffff"))
    colours = {
        image.pixelColor(x, y).name() for x in range(32) for y in range(32) if image.pixelColor(x, y).alpha() > 250
    }
    assert colours == {"#ffffff"}
    assert not icons.tray_icon("light").isNull() and not icons.tray_icon("dark").isNull()


def test_resources_are_found_in_a_pyinstaller_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert icons.resource_path("icons", "shoal.svg").is_file()  # in the checkout
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert icons.resource_path("icons", "shoal.svg") == tmp_path / "resources" / "icons" / "shoal.svg"


def test_desktop_entry() -> None:
    path = icons.resource_path("shoal.desktop")
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(path, encoding="utf-8")
    main = entry["Desktop Entry"]
    assert (main["Name"], main["Exec"], main["Icon"], main["Categories"]) == ("Shoal", "shoal", "shoal", "Utility;")
    assert main["Actions"] == "quick-ask;"
    assert entry["Desktop Action quick-ask"]["Exec"] == "shoal --quick-ask"
    validator = shutil.which("desktop-file-validate")
    if validator:
        result = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout


async def test_turns_sent_from_the_main_window_do_not_write_into_the_box() -> None:
    async with scripted_bridge(["Box answer.", "Main window answer."]) as (bridge, _):
        box = QuickAskBox(bridge)
        box.popup()
        box.input.setText("Box question")
        box.ask()
        await wait_until(lambda: "Box answer." in box.answer_text and not box.busy)
        ended: list[object] = []
        bridge.turnEnded.connect(lambda *_: ended.append(1))
        bridge.send(box.session_id, "asked in the main window")  # the same session, another front end
        await wait_until(lambda: bool(ended))
        assert box.answer_text == "Box answer."
