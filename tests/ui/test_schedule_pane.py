"""The Schedule pane in the real desktop app over a real core (scripted model): a job added through the dialog
(with its live preview and a wrong cron field explained), listed, run now, its run listed and notified, its
thread opened in the chat, switched off, edited and deleted; and a job added by another process is listed and
runs on time, streaming into its open thread."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

from app.desktop import DesktopApp
from core.history import History
from core.providers.scripted import ScriptedProvider
from core.schedule import ScheduleStore
from core.schedule.clock import local_zone
from core.settings import load_settings
from tests.fixtures.schedule import FakeClock, attach_scheduler
from tests.ui.conftest import scripted_bridge, wait_until
from tests.ui.test_timeline_pane import rows
from ui.main_window import MainWindow
from ui.widgets import schedule_format as fmt
from ui.widgets.schedule_jobs import DETAIL_ROLE, Col
from ui.widgets.schedule_runs import Col as RunCol

ANSWER = "You have 3 unread notes: the plumber called, the tide table, and the Lisbon tickets."
SCREENSHOTS = Path("/tmp")  # schedule_pane.png, schedule_dialog.png: to look at the pane after a change


async def test_add_run_notify_open_disable_edit_and_delete_from_the_pane(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    app = QApplication.instance()
    desktop = DesktopApp(app, load_settings(None, {}), provider=ScriptedProvider([ANSWER], delay=0.01))  # type: ignore[arg-type]
    notes: list[tuple[str, str]] = []
    try:
        await desktop.start()
        monkeypatch.setattr(desktop.tray, "notify", lambda title, text, msecs=8000: notes.append((title, text)) or True)
        window, pane = desktop.window, desktop.window.schedule
        window.resize(1400, 900)
        window.schedule_dock.show()
        window.schedule_dock.raise_()
        assert desktop.core.schedule.running, "the desktop app runs the scheduler"
        assert "Running · 1 job at a time" in pane.state_label.text()
        assert not pane.empty_label.isHidden() and not pane.run_button.isEnabled()

        pane.new_button.click()
        dialog = pane.dialog
        assert dialog.isVisible() and dialog.windowTitle() == "New scheduled job"
        assert not dialog.save_button.isEnabled(), "no prompt yet"
        dialog.prompt.setPlainText("Summarise my unread notes")
        dialog.cron.setText("0 25 * * 1-5")
        assert "The hour field '25'" in dialog.schedule_error.plain and "0-23" in dialog.schedule_error.plain
        assert not dialog.save_button.isEnabled()
        dialog.preset.activated.emit(1)  # "Every weekday at 08:00"
        assert dialog.cron.text() == "0 8 * * 1-5" and dialog.schedule_error.isHidden()
        assert "every weekday at 08:00" in dialog.preview.text() and "Next runs:" in dialog.preview.text()
        assert dialog.preview.text().count("08:00") == 4, "the words and three next times"
        dialog.kind.setCurrentIndex(1)
        assert "every 30 minutes" in dialog.preview.text()
        dialog.kind.setCurrentIndex(0)
        dialog.name.setText("Morning notes")
        hints = [label.text() for label in dialog.claim_box.findChildren(QLabel)]
        assert dialog.claim.text() == "" and any("Group mode is off: it runs here." in hint for hint in hints)
        dialog.claim.setText("  morning   notes ")
        assert dialog.save_button.isEnabled()
        dialog.grab().save(str(SCREENSHOTS / "schedule_dialog.png"))
        dialog.save_button.click()
        await wait_until(lambda: len(pane.jobs.jobs()) == 1, message="the new job was not listed")
        [job] = pane.jobs.jobs()
        assert (job.name, job.prompt, job.expr, job.notify) == ("Morning notes", "Summarise my unread notes",
                                                                 "0 8 * * 1-5", True)  # fmt: skip
        assert job.group_claim == "morning notes", "the key, trimmed, as the CLI's --claim keeps it"
        item = pane.jobs.topLevelItem(0)
        assert item.data(Col.NAME, DETAIL_ROLE) == "every weekday at 08:00", "the schedule in words, under the name"
        assert item.text(Col.NEXT) == fmt.next_run_text(job).split(" (")[0] and item.data(Col.NEXT, DETAIL_ROLE)
        assert item.text(Col.LAST) == "never run" and item.checkState(Col.NAME) == Qt.CheckState.Checked
        assert "Group claim morning notes" in item.toolTip(Col.NEXT)
        assert pane.empty_label.isHidden() and "Saved “Morning notes”" in pane.error.plain

        pane.jobs.select_job(job.id)
        await pane.settle()
        assert pane.run_button.isEnabled() and pane.runs_label.text() == "Recent runs of “Morning notes”"
        pane.run_button.click()
        await wait_until(lambda: [r.status for r in pane.runs.runs()] == ["ok"], timeout=10, message="no ok run")
        run_item = pane.runs.topLevelItem(0)
        assert run_item.text(RunCol.STATUS) == "✓ ok" and run_item.text(RunCol.TRIGGER) == "run now"
        assert run_item.text(RunCol.RESULT) == ANSWER
        await wait_until(lambda: pane.jobs.topLevelItem(0).text(Col.LAST).startswith("✓ ok"))
        assert notes == [("Morning notes", ANSWER)], "the finished run was announced from the tray"
        await wait_until(lambda: window.chat.threads.title_of(job.session_id) == "Scheduled · Morning notes")
        window.grab().save(str(SCREENSHOTS / "schedule_pane.png"))

        pane.runs.itemDoubleClicked.emit(run_item, 0)  # open the run's thread
        await wait_until(lambda: window.chat.current_session_id() == job.session_id)
        await wait_until(lambda: ANSWER in window.chat.view.toPlainText(), message="the answer is not in the chat")
        await window.timeline.settle()
        label = "schedule.run · Morning notes: ok (run now)"
        await wait_until(lambda: label in [r.text(0) for r in rows(window.timeline.tree)], message="no timeline row")

        pane.jobs.topLevelItem(0).setCheckState(Col.NAME, Qt.CheckState.Unchecked)
        await wait_until(lambda: not pane.jobs.jobs()[0].enabled, message="the job was not switched off")
        assert pane.jobs.topLevelItem(0).text(Col.NEXT) == "off"
        assert not (await desktop.bridge.schedule.jobs())[0].enabled

        pane.jobs.editRequested.emit(pane.jobs.jobs()[0])
        editor = pane.dialog
        assert editor.windowTitle() == "Edit scheduled job" and editor.prompt.toPlainText() == job.prompt
        assert editor.cron.text() == "0 8 * * 1-5" and editor.save_button.text() == "Save"
        editor.kind.setCurrentIndex(1)
        editor.every_count.setValue(2)
        editor.every_unit.setCurrentIndex(editor.every_unit.findData("h"))
        editor.catch_up.setCurrentIndex(editor.catch_up.findData("skip"))
        assert editor.claim.text() == "morning notes"
        editor.claim.clear()
        editor.save_button.click()
        await wait_until(lambda: pane.jobs.topLevelItem(0).data(Col.NAME, DETAIL_ROLE) == "every 2 hours")
        edited = pane.jobs.jobs()[0]
        assert (edited.kind, edited.expr, edited.catch_up, edited.session_id) == ("interval", "2h", "skip",
                                                                                 job.session_id)  # fmt: skip
        assert edited.group_claim is None, "an emptied key removes the claim"

        pane.jobs.select_job(job.id)
        box = pane.confirm_delete()
        assert isinstance(box, QMessageBox) and "Morning notes" in box.text()
        box.button(QMessageBox.StandardButton.Yes).click()
        await wait_until(lambda: pane.jobs.jobs() == [], message="the job was not deleted")
        assert not pane.empty_label.isHidden() and await desktop.bridge.schedule.jobs() == []
        assert window.chat.threads.title_of(job.session_id), "the thread stays"
    finally:
        await desktop.shutdown()
    assert not desktop.core.schedule.running


async def test_the_scheduler_is_switched_off_and_on_in_settings(tmp_path: Path) -> None:
    app = QApplication.instance()
    config = tmp_path / "config.toml"
    desktop = DesktopApp(app, load_settings(config, {}), provider=ScriptedProvider([ANSWER]))  # type: ignore[arg-type]
    try:
        await desktop.start()
        pane = desktop.window.schedule
        assert desktop.core.schedule.running and "Running · 1 job at a time" in pane.state_label.text()
        for on, shown in ((False, "The scheduler is off"), (True, "Running · 2 jobs at a time")):
            desktop.open_settings()
            dialog = desktop._dialogs[-1]
            dialog.schedule_tab.enabled.setChecked(on)
            dialog.schedule_tab.max_concurrent.setText("2")
            assert dialog.apply()
            dialog.reject()
            await wait_until(lambda on=on: desktop.core.schedule.running == on, message="the runner did not follow")
            await wait_until(lambda shown=shown: shown in pane.state_label.text(), message=pane.state_label.text())
    finally:
        await desktop.shutdown()


async def test_a_job_added_elsewhere_appears_and_runs_on_time_into_its_open_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = FakeClock(start)
    async with scripted_bridge([ANSWER], delay=0.02) as (bridge, _provider):
        scheduler = attach_scheduler(bridge.core, clock, zone=local_zone(), poll=0.05)
        window = MainWindow(bridge)
        window.resize(1300, 850)
        window.show()
        await window.start()
        await scheduler.start()
        pane = window.schedule
        streamed: list[str] = []
        bridge.assistantDelta.connect(lambda sid, text: streamed.append(text))
        async with History(bridge.core.settings) as other:  # another process: `shoal schedule add`
            store = ScheduleStore(other.db, clock=clock, zone=local_zone)
            job = await store.add("Tide report", at=(start + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M"))
        await wait_until(lambda: [j.id for j in pane.jobs.jobs()] == [job.id], message="not listed without a refresh")
        window.open_session(job.session_id)
        await wait_until(lambda: window.chat.current_session_id() == job.session_id)
        clock.advance(minutes=5)
        await wait_until(lambda: [r.status for r in pane.runs.runs()] == ["ok"], timeout=10, message="no run")
        assert pane.runs.topLevelItem(0).text(RunCol.TRIGGER) == "on time"
        assert "".join(streamed) == ANSWER, "the scheduled turn streamed through the bridge"
        await wait_until(lambda: ANSWER in window.chat.view.toPlainText(), message="not shown in its open thread")
        assert pane.jobs.topLevelItem(0).text(Col.NEXT) == "done", "a one-off is done once it ran"


async def test_a_scheduled_run_in_the_open_thread_blocks_a_second_turn_and_stop_cancels_it() -> None:
    async with scripted_bridge(["word " * 400], delay=0.01) as (bridge, _provider):
        window = MainWindow(bridge)
        window.show()
        await window.start()
        job = await bridge.schedule.add_job("A long report", every="1d", name="Report")
        assert job is not None
        window.open_session(job.session_id)
        await wait_until(lambda: window.chat.current_session_id() == job.session_id)
        bridge.schedule.run_now(job.id)
        await wait_until(lambda: bridge.is_busy(job.session_id), message="the scheduled run did not start")
        assert window.chat.composer.send_button.text() == "Stop", "the thread shows the run as its answer"
        assert bridge.send(job.session_id, "me too") is None, "no second turn in a thread a run is writing into"
        await wait_until(lambda: "word word" in window.chat.view.toPlainText(), message="not streamed into the chat")
        window.chat.stop()
        await wait_until(lambda: not bridge.is_busy(job.session_id), message="Stop did not stop the run")
        await bridge.schedule.drain()
        [run] = await bridge.schedule.runs(job.id)
        assert run.status == "cancelled" and run.trigger == "manual"
