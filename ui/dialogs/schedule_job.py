"""Add or edit a scheduled job: the prompt, when it runs (a common schedule, cron, an interval or once), what
to do about missed runs, whether to notify, and a group claim key (each time runs once across the group).

What a person types is checked as they type, by the same parser the core uses: the schedule is put into words
with its next three times ("Next runs: tomorrow 08:00, Wed 3 Jun 08:00, …"), and a mistake is explained right
under the field, naming the cron field at fault, with Save disabled until it is fixed. Saving goes through
`bridge.schedule`; a refusal from the core is shown in the same place and the dialog stays open.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QDateTime, QTime, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import ShoalError
from core.schedule import Job
from core.schedule.spec import interval_seconds
from core.schedule.words import when
from ui.tasks import spawn
from ui.widgets import schedule_format as fmt
from ui.widgets.form_row import field_row, form_layout
from ui.widgets.inline_message import InlineMessage

KINDS = (("On a schedule (cron)", "cron"), ("Every…", "interval"), ("Once, at…", "once"))
UNITS = (("minutes", "m", 60), ("hours", "h", 3600), ("days", "d", 86400))
CLAIM_HINT = (
    "Machines in the group whose job has the same key run each of its times once between them: the first to "
    "claim the time runs it, the others record it as skipped."
)
CRON_HINT = "minute hour day-of-month month day-of-week, in local time: 0 8 * * 1-5 is weekdays at 08:00"


class JobDialog(QDialog):
    saved = Signal(object)  # the Job as saved

    def __init__(self, schedule: Any, job: Job | None = None, parent: QWidget | None = None) -> None:
        """`schedule`: the `ui.schedule_bridge.ScheduleBridge`; `job`: the job to edit (None: a new one)."""
        super().__init__(parent)
        self.schedule = schedule
        self.job = job
        self.setWindowTitle("Edit scheduled job" if job else "New scheduled job")
        self.resize(600, 560)
        self._saving = False
        self._ready = False  # the fields' change signals fire while they are built and filled: not yet
        self._initial: dict[str, str] = {}
        self._build()
        if job is not None:
            self._fill(job)
        self._initial = self.schedule_args()
        self._ready = True
        self.validate()

    # --- building ----------------------------------------------------------------------------------

    def _build(self) -> None:
        body = QWidget()
        form = form_layout(body)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("What should the agent do each time? e.g. Summarise my unread notes.")
        self.prompt.setMinimumHeight(90)
        self.prompt.textChanged.connect(self.validate)
        field_row(form, "Prompt", self.prompt, "Sent as a message in the job's own thread; answers stay there.")
        self.name = QLineEdit()
        self.name.setPlaceholderText("From the prompt")
        field_row(form, "Name", self.name)

        self.kind = QComboBox()
        for label, kind in KINDS:
            self.kind.addItem(label, kind)
        self.pages = QStackedWidget()
        self.pages.addWidget(self._cron_page())
        self.pages.addWidget(self._interval_page())
        self.pages.addWidget(self._once_page())
        self.kind.currentIndexChanged.connect(self._kind_changed)
        when_box = QWidget()
        column = QVBoxLayout(when_box)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.kind)
        column.addWidget(self.pages)
        _box, self.schedule_error = field_row(form, "Runs", when_box)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        field_row(form, "", self.preview)

        self.catch_up = QComboBox()
        setting = self.schedule.state()["catch_up"]
        for label, value in fmt.CATCH_UP_CHOICES:
            self.catch_up.addItem(f"{label} ({setting})" if value is None else label, value)
        field_row(
            form,
            "Missed runs",
            self.catch_up,
            "When Shoal was closed or asleep at its time: run it once on return, or wait for the next time.",
        )
        self.notify = QCheckBox("Show a notification when it runs")
        self.notify.setChecked(True)
        notify_hint = "" if self.schedule.state()["notify"] else "Notifications are off in Settings (schedule.notify)."
        field_row(form, "", self.notify, notify_hint)
        self.claim = QLineEdit()
        self.claim.setMaxLength(200)
        self.claim.setPlaceholderText("None: this machine runs every time")
        group = self.schedule.state().get("group", "")
        if group is None:
            where = " The server runs the job: the key counts in the server's group."
        else:
            where = f" This agent is in group {group}." if group else " Group mode is off: it runs here."
        claim_hint = CLAIM_HINT + where
        self.claim_box, _error = field_row(form, "Group claim", self.claim, claim_hint)

        self.error = InlineMessage()
        self.buttons = QDialogButtonBox()
        self.save_button = self.buttons.addButton(
            "Save" if self.job else "Add job", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.save_button.setDefault(True)
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.save_button.clicked.connect(self.save)
        cancel.clicked.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(body, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

    def _cron_page(self) -> QWidget:
        page = QWidget()
        column = QVBoxLayout(page)
        column.setContentsMargins(0, 0, 0, 0)
        self.preset = QComboBox()
        self.preset.addItem("Choose a common schedule…", "")
        for label, expr in fmt.PRESETS:
            self.preset.addItem(f"{label}    {expr}", expr)
        self.preset.activated.connect(self._preset_chosen)
        self.cron = QLineEdit("0 8 * * 1-5")
        self.cron.setPlaceholderText("0 8 * * 1-5")
        self.cron.textChanged.connect(self.validate)
        hint = QLabel(CRON_HINT)
        hint.setWordWrap(True)
        hint.setEnabled(False)
        column.addWidget(self.preset)
        column.addWidget(self.cron)
        column.addWidget(hint)
        return page

    def _interval_page(self) -> QWidget:
        page = QWidget()
        row = QHBoxLayout(page)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Every"))
        self.every_count = QSpinBox()
        self.every_count.setRange(1, 999)
        self.every_count.setValue(30)
        self.every_unit = QComboBox()
        for label, unit, _size in UNITS:
            self.every_unit.addItem(label, unit)
        self.every_count.valueChanged.connect(self.validate)
        self.every_unit.currentIndexChanged.connect(self.validate)
        row.addWidget(self.every_count)
        row.addWidget(self.every_unit)
        row.addStretch(1)
        return page

    def _once_page(self) -> QWidget:
        page = QWidget()
        row = QHBoxLayout(page)
        row.setContentsMargins(0, 0, 0, 0)
        self.at = QDateTimeEdit()
        self.at.setCalendarPopup(True)
        self.at.setDisplayFormat("yyyy-MM-dd HH:mm")
        soon = QDateTime.currentDateTime().addSecs(3600)
        soon.setTime(QTime(soon.time().hour(), 0))
        self.at.setDateTime(soon)
        self.at.dateTimeChanged.connect(self.validate)
        row.addWidget(self.at)
        row.addWidget(QLabel("local time"))
        row.addStretch(1)
        return page

    def _fill(self, job: Job) -> None:
        self.prompt.setPlainText(job.prompt)
        self.name.setText(job.name)
        self.kind.setCurrentIndex([kind for _label, kind in KINDS].index(job.kind))
        if job.kind == "cron":
            self.cron.setText(job.expr)
        elif job.kind == "interval":
            seconds = interval_seconds(job.expr)
            _label, unit, size = next(u for u in reversed(UNITS) if seconds % u[2] == 0 or u[1] == "m")
            self.every_unit.setCurrentIndex(self.every_unit.findData(unit))
            self.every_count.setValue(max(1, seconds // size))
        else:
            local = job.spec.at().astimezone()
            self.at.setDateTime(QDateTime.fromString(local.strftime("%Y-%m-%d %H:%M"), "yyyy-MM-dd HH:mm"))
        self.catch_up.setCurrentIndex(max(0, self.catch_up.findData(job.catch_up)))
        self.notify.setChecked(job.notify)
        self.claim.setText(job.group_claim or "")

    # --- reacting ----------------------------------------------------------------------------------

    def _kind_changed(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        self.validate()

    def _preset_chosen(self, index: int) -> None:
        expr = self.preset.itemData(index)
        if expr:
            self.cron.setText(expr)
        self.preset.setCurrentIndex(0)

    def schedule_args(self) -> dict[str, str]:
        """What the fields say, as `cron` / `every` / `at` for the core."""
        kind = self.kind.currentData()
        if kind == "cron":
            return {"cron": self.cron.text().strip()}
        if kind == "interval":
            return {"every": f"{self.every_count.value()}{self.every_unit.currentData()}"}
        return {"at": self.at.dateTime().toString("yyyy-MM-dd HH:mm")}

    def _schedule_changed(self) -> bool:
        return self.job is None or self.schedule_args() != self._initial

    def validate(self) -> bool:
        """Put the schedule into words with its next times, or say what is wrong; enable Save when all is well."""
        if not self._ready:
            return False
        ok = True
        if self._schedule_changed():
            try:
                words, times = self.schedule.preview(**self.schedule_args())
            except ShoalError as exc:
                self.schedule_error.show_error(exc)
                self.preview.setText("")
                ok = False
            else:
                self.schedule_error.clear_message()
                now = fmt.now()
                upcoming = ", ".join(when(t, now=now) for t in times) or "none"
                self.preview.setText(f"<b>{words}</b><br>Next runs: {upcoming}")
        else:
            assert self.job is not None
            self.schedule_error.clear_message()
            self.preview.setText(f"<b>{self.job.describe()}</b><br>Next run: {fmt.next_run_text(self.job)}")
        ready = ok and bool(self.prompt.toPlainText().strip()) and not self._saving
        self.save_button.setEnabled(ready)
        return ok

    def save(self) -> None:
        if not self.validate():
            return
        self._saving = True
        self.save_button.setEnabled(False)
        spawn(self._save())

    async def _save(self) -> None:
        fields: dict[str, Any] = {
            "name": self.name.text().strip(),
            "catch_up": self.catch_up.currentData(),
            "notify": self.notify.isChecked(),
            "group_claim": self.claim.text().strip(),  # empty: none (also clears one when editing)
        }
        if self._schedule_changed():
            fields.update(self.schedule_args())
        try:
            job = await self.schedule.save_job(self.job.id if self.job else None, self.prompt.toPlainText(), **fields)
        except ShoalError as exc:
            self.error.show_error(exc)
            return
        finally:
            self._saving = False
            if self.isVisible():
                self.validate()
        self.job = job
        self.saved.emit(job)
        self.accept()
