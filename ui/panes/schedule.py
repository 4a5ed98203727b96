"""The Schedule pane: jobs that run prompts on their own (every weekday at 8:00, every 2 hours, once on
Tuesday), whether the scheduler is running, and how recent runs went.

A person should see at a glance what will run next and whether the last run worked, without a terminal: the job
list says each schedule in words with its next run, the runs list shows the selected job's recent runs (or
everyone's) with their status, and a run opens its thread in the chat. New/Edit open a dialog that checks the
schedule as it is typed; a job is switched on or off with its checkbox; Delete asks first. Everything goes
through `bridge.schedule`; its `changed` signal (coalesced, and also fired for jobs added from `shoal schedule`
in another process) reloads the lists, and a timer keeps "in 5 min" honest.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from core.errors import ShoalError
from core.schedule import Job, Run
from ui.bridge import Bridge
from ui.tasks import spawn
from ui.widgets import schedule_format as fmt
from ui.widgets.confirm import confirm
from ui.widgets.inline_message import InlineMessage
from ui.widgets.schedule_jobs import JobList
from ui.widgets.schedule_runs import RunList

RETICK_MS = 30_000  # relative times ("in 5 min") and jobs added elsewhere
RUNS_SHOWN = 50
EMPTY_TEXT = (
    "No scheduled jobs yet. A job sends a prompt on its own, on a schedule: “every weekday at 08:00, summarise "
    "my unread notes”. Click New job… to add one."
)


class SchedulePane(QWidget):
    openSessionRequested = Signal(str)  # a job's or run's thread, to show in the chat

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.schedule = bridge.schedule
        self.dialog: Any = None
        self._confirm: QMessageBox | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._generation = 0
        self._started_here: set[str] = set()  # jobs run with Run now here, whose end the message line reports
        self.jobs = JobList(self)
        self.runs = RunList(self)
        self._build()
        self._retick = QTimer(self)
        self._retick.setInterval(RETICK_MS)
        self._retick.timeout.connect(self.refresh)
        self.jobs.jobSelected.connect(self._on_selected)
        self.jobs.enabledToggled.connect(lambda job_id, on: self._run(self._set_enabled(job_id, on)))
        self.jobs.editRequested.connect(self.open_editor)
        self.runs.openRequested.connect(self._open_run)
        self.schedule.changed.connect(self.refresh)
        self.schedule.runFinished.connect(self._on_run_finished)
        self.schedule.stateChanged.connect(self._show_state)
        self.schedule.errorRaised.connect(lambda error: self.error.show_error(error["message"], error.get("fix", "")))

    def _build(self) -> None:
        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.RichText)
        self.state_label.setWordWrap(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Pause scheduled runs (Run now still works); missed times follow the rule")
        self.pause_button.toggled.connect(self.schedule.set_paused)
        self.new_button = QPushButton("New job…")
        self.new_button.clicked.connect(lambda: self.open_editor(None))
        top = QHBoxLayout()
        top.addWidget(self.state_label, 1)
        top.addWidget(self.pause_button)
        top.addWidget(self.new_button)

        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setWordWrap(True)
        self.empty_label.setEnabled(False)
        self.run_button = QPushButton("Run now")
        self.run_button.setToolTip("Run the selected job now, once; its schedule does not change")
        self.run_button.clicked.connect(self.run_selected)
        self.edit_button = QPushButton("Edit…")
        self.edit_button.clicked.connect(lambda: self.open_editor(self.jobs.selected_job()))
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.confirm_delete)
        self.open_button = QPushButton("Open thread")
        self.open_button.setToolTip("Show the job's thread (every answer it gave) in the chat")
        self.open_button.clicked.connect(self._open_job)
        actions = QHBoxLayout()
        for button in (self.run_button, self.edit_button, self.delete_button, self.open_button):
            actions.addWidget(button)
        actions.addStretch(1)

        jobs_box = QWidget()
        jobs_column = QVBoxLayout(jobs_box)
        jobs_column.setContentsMargins(0, 0, 0, 0)
        jobs_column.setSpacing(4)
        jobs_column.addWidget(self.empty_label)
        jobs_column.addWidget(self.jobs, 1)
        jobs_column.addLayout(actions)
        self.runs_label = QLabel("Recent runs")
        runs_box = QWidget()
        runs_column = QVBoxLayout(runs_box)
        runs_column.setContentsMargins(0, 0, 0, 0)
        runs_column.setSpacing(4)
        runs_column.addWidget(self.runs_label)
        runs_column.addWidget(self.runs, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(jobs_box)
        self.splitter.addWidget(runs_box)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        self.error = InlineMessage()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.error)
        layout.addWidget(self.splitter, 1)
        self._update_buttons(None)

    # --- public API --------------------------------------------------------------------------------

    async def start(self) -> None:
        """The core has started (its scheduler exists now): follow it and load the lists."""
        self.schedule.sync()
        self._show_state()
        await self.reload()
        self._retick.start()

    def refresh(self) -> None:
        self._run(self.reload())

    async def reload(self) -> None:
        """Jobs and the runs of the selected job (or of all); a reload overtaken by a newer one is dropped."""
        if not self.schedule.available:
            return
        self._generation += 1
        generation = self._generation
        try:
            jobs = await self.schedule.jobs()
            selected = self.jobs.selected_job()
            chosen = selected.id if selected and any(j.id == selected.id for j in jobs) else None
            runs = await self.schedule.runs(chosen, RUNS_SHOWN)
        except ShoalError as exc:
            if generation == self._generation:
                self.error.show_error(exc)
            return
        if generation != self._generation:
            return
        now = fmt.now()
        self.jobs.set_jobs(jobs, now)
        self.empty_label.setVisible(not jobs)
        current = self.jobs.selected_job()
        self.runs.set_runs(runs, show_job=current is None, at=now)
        self.runs_label.setText(f"Recent runs of “{current.name}”" if current else "Recent runs (all jobs)")
        self._update_buttons(current)
        self._show_state()

    async def settle(self) -> None:
        """Wait for reloads and commands started here (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0.01)

    def open_editor(self, job: Job | None) -> Any:
        """The add (job None) or edit dialog, window-modal, answered by signal."""
        from ui.dialogs.schedule_job import JobDialog

        dialog = JobDialog(self.schedule, job, self)
        dialog.saved.connect(self._on_saved)
        dialog.finished.connect(lambda _result: dialog.deleteLater())
        self.dialog = dialog
        dialog.open()
        return dialog

    def run_selected(self) -> None:
        job = self.jobs.selected_job()
        if job is None:
            return
        self.error.show_info(f"Running “{job.name}”… its answer appears in its thread and below.")
        self._started_here.add(job.id)
        self.schedule.run_now(job.id)

    def confirm_delete(self) -> QMessageBox | None:
        job = self.jobs.selected_job()
        if job is None:
            return None
        self._confirm = confirm(
            self,
            "Delete scheduled job",
            f"Delete “{job.name}”?",
            f"It will no longer run ({job.describe()}) and its run history goes. Its thread, with every answer it "
            "gave, stays in the chat.",
            "Delete",
            lambda: self._run(self._delete(job)),
        )
        return self._confirm

    # --- reactions ---------------------------------------------------------------------------------

    def _show_state(self) -> None:
        state = self.schedule.state() if self.schedule.available else {}
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(bool(state.get("paused")))
        self.pause_button.blockSignals(False)
        self.pause_button.setEnabled(bool(state.get("running")))
        if not state:
            text = "Starting…"
        elif not state["enabled"]:
            text = (
                '<span style="color:#8a8a8a">○</span> The scheduler is off (schedule.enabled): jobs are kept but '
                "do not run on their own; Run now still works."
            )
        elif state["paused"]:
            text = '<span style="color:#d97706">⏸</span> Paused: nothing runs on schedule until you resume.'
        elif state["running"]:
            count = state["max_concurrent"]
            text = f'<span style="color:#2e9d3a">●</span> Running · {count} job{"s" * (count != 1)} at a time'
        else:
            text = '<span style="color:#8a8a8a">○</span> Not running in this window.'
        self.state_label.setText(text)

    def _on_run_finished(self, run: Run, job: Job) -> None:
        if job.id not in self._started_here:
            return
        self._started_here.discard(job.id)
        if run.status == "failed":
            message, _, fix = (run.error or "The run failed.").partition("\n  → ")
            self.error.show_error(f"“{job.name}” failed: {message}", fix)
        else:
            self.error.clear_message()

    def _on_selected(self, job: Job | None) -> None:
        self._update_buttons(job)
        self.refresh()

    def _update_buttons(self, job: Job | None) -> None:
        for button in (self.run_button, self.edit_button, self.delete_button, self.open_button):
            button.setEnabled(job is not None)

    def _on_saved(self, job: Job) -> None:
        self.error.show_ok(f"Saved “{job.name}”: {job.describe()}, next {fmt.next_run_text(job)}.")
        self._run(self._select_after_reload(job.id))

    async def _select_after_reload(self, job_id: str) -> None:
        await self.reload()
        if self.jobs.select_job(job_id):
            await self.reload()

    async def _set_enabled(self, job_id: str, on: bool) -> None:
        job = await self.schedule.set_enabled(job_id, on)
        if job is not None:
            self.error.clear_message()
        await self.reload()

    async def _delete(self, job: Job) -> None:
        if await self.schedule.remove_job(job.id) is not None:
            self.error.show_ok(f"Deleted “{job.name}”. Its thread stays in the chat.")
            await self.reload()

    def _open_job(self) -> None:
        job = self.jobs.selected_job()
        if job is not None:
            self.openSessionRequested.emit(job.session_id)

    def _open_run(self, run: Run) -> None:
        if run.session_id:
            self.openSessionRequested.emit(run.session_id)

    def _run(self, coro: Any) -> None:
        task = spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
