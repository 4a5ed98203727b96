"""The settings dialog's Schedule tab: the `[schedule]` settings (docs/schedule.md) the Schedule pane follows.

Whether scheduled prompts run at all, how many at once, what a run missed while Shoal was closed does (one
catch-up, or wait for the next time), how old a missed run may be and still catch up, and whether a finished
run shows a notification. Saved like every other field (config.toml through the dialog), and applied to the
running scheduler at once: switching it off stops the runner, the jobs stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QWidget

from ui.dialogs.settings_fields import _Field, _float, _int, intro_form

if TYPE_CHECKING:
    from ui.dialogs.settings import SettingsDialog

CATCH_UP = (("Run it once when Shoal is back", "once"), ("Skip it and wait for the next time", "skip"))


class ScheduleTab(QWidget):
    def __init__(self, dialog: SettingsDialog) -> None:
        super().__init__()
        form = intro_form(self, "Scheduled prompts run while the app is open; the Schedule pane lists them.")

        self.enabled = QCheckBox("Run scheduled prompts")
        self._check(dialog, form, "Scheduler", self.enabled, "schedule.enabled", "Off: the jobs are kept, none runs.")
        self.max_concurrent = dialog._line_field(
            form, "Runs at once", "schedule.max_concurrent", _int, hint="Across all jobs, 1 to 16.", width=120
        )
        self.catch_up = QComboBox()
        for label, value in CATCH_UP:
            self.catch_up.addItem(label, value)
        error = dialog._row(
            form,
            "A missed run",
            self.catch_up,
            "schedule.catch_up",
            hint="When Shoal was closed or asleep at a job's time (a job can choose otherwise).",
        )
        self.catch_up.currentIndexChanged.connect(lambda _index: error.clear_message())
        dialog.fields["schedule.catch_up"] = _Field(
            "schedule.catch_up",
            self.catch_up.currentData,
            lambda value: self.catch_up.setCurrentIndex(max(0, self.catch_up.findData(value))),
            error,
        )
        self.window_hours = dialog._line_field(
            form,
            "Catch-up window (h)",
            "schedule.catch_up_window_hours",
            _float,
            hint="A missed run older than this is skipped, whatever the above says.",
            width=120,
        )
        self.notify = QCheckBox("Show a notification when a scheduled run finishes")
        self._check(dialog, form, "Notifications", self.notify, "schedule.notify")

    @staticmethod
    def _check(dialog: SettingsDialog, form: QFormLayout, label: str, box: QCheckBox, key: str, hint: str = "") -> None:
        error = dialog._row(form, label, box, key, hint=hint)
        box.toggled.connect(lambda _on: error.clear_message())
        dialog.fields[key] = _Field(key, box.isChecked, box.setChecked, error)
