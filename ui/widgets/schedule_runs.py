"""The Schedule pane's recent runs: when, status, how it was triggered, how long it took, the answer or why not.

Shows the selected job's runs, or every job's (with a Job column) when none is selected. Double-clicking a run
asks to open its thread in the chat, where the whole answer and, in the timeline, every step of it are.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from core.schedule import Run
from ui.widgets import schedule_format as fmt

RUN_ROLE = Qt.ItemDataRole.UserRole + 1


class Col(IntEnum):
    WHEN = 0
    JOB = 1
    STATUS = 2
    TRIGGER = 3
    TOOK = 4
    RESULT = 5


HEADERS = ["When", "Job", "Status", "Trigger", "Took", "Result"]


class RunList(QTreeWidget):
    runSelected = Signal(object)  # Run | None
    openRequested = Signal(object)  # Run: open its thread

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(Col))
        self.setHeaderLabels(HEADERS)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.header()
        header.setStretchLastSection(True)
        for col in (Col.WHEN, Col.JOB, Col.STATUS, Col.TRIGGER, Col.TOOK):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.currentItemChanged.connect(lambda current, _previous: self.runSelected.emit(self._run_of(current)))
        self.itemDoubleClicked.connect(self._on_double_click)

    def set_runs(self, runs: list[Run], *, show_job: bool, at: datetime | None = None) -> None:
        keep = self.selected_run()
        self.blockSignals(True)
        try:
            self.clear()
            for run in runs:
                item = self._item(run, at)
                self.addTopLevelItem(item)
                if keep is not None and run.id == keep.id:
                    self.setCurrentItem(item)
        finally:
            self.blockSignals(False)
        self.setColumnHidden(Col.JOB, not show_job)

    def _item(self, run: Run, at: datetime | None) -> QTreeWidgetItem:
        result = fmt.run_result(run)
        cells = [
            fmt.run_time(run, at),
            run.job_name,
            fmt.run_status(run),
            fmt.run_trigger(run),
            fmt.run_took(run),
            result[:200],
        ]
        item = QTreeWidgetItem(cells)
        item.setData(Col.WHEN, RUN_ROLE, run)
        color = fmt.STATUS_COLORS.get(run.status)
        if color:
            item.setForeground(Col.STATUS, QBrush(QColor(color)))
        full = (run.error or "") if run.status == "failed" else (run.summary or run.error or "")
        tip = f"{full or result}\n\n{fmt.scheduled_text(run, at)} Double-click to open the thread."
        for col in Col:
            item.setToolTip(col, tip)
        return item

    @staticmethod
    def _run_of(item: QTreeWidgetItem | None) -> Run | None:
        return item.data(Col.WHEN, RUN_ROLE) if item is not None else None

    def _on_double_click(self, item: QTreeWidgetItem, _column: int) -> None:
        run = self._run_of(item)
        if run is not None:
            self.openRequested.emit(run)

    def selected_run(self) -> Run | None:
        return self._run_of(self.currentItem())

    def runs(self) -> list[Run]:
        return [self._run_of(self.topLevelItem(i)) for i in range(self.topLevelItemCount())]  # type: ignore[misc]
