"""The Schedule pane's job list: on/off, name, the schedule in words, next run, how the last run went.

Each cell has two lines, the main fact over a muted detail (name over "every weekday at 08:00", "Mon 08:00" over
"in 37 h", "✓ ok" over when), so the list stays readable in a narrow dock. Rebuilt from the jobs on every
(coalesced) change: a person has tens of jobs, not thousands, and a rebuild keeps the rows exactly what the
database says. The selected job stays selected. The checkbox before the name switches a job on or off; the
row's tooltip is the prompt.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from core.schedule import Job
from core.schedule.words import relative, when
from ui.widgets import schedule_format as fmt

JOB_ROLE = Qt.ItemDataRole.UserRole + 1
DETAIL_ROLE = Qt.ItemDataRole.UserRole + 2  # the muted second line of a cell
PAD = 3
LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
Index = QModelIndex | QPersistentModelIndex


class Col(IntEnum):
    NAME = 0
    NEXT = 1
    LAST = 2


HEADERS = ["Job", "Next run", "Last run"]


class _TwoLines(QStyledItemDelegate):
    """The cell's text (bold in the first column) over its detail in the muted colour; both elided, never wrapped.
    The text starts where the style puts it, after the check box."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        title, detail = opt.text, str(index.data(DETAIL_ROLE) or "")
        style = opt.widget.style() if opt.widget else None
        if style is None:
            return
        rect = style.subElementRect(QStyle.SubElement.SE_ItemViewItemText, opt, opt.widget).adjusted(PAD, 0, -PAD, 0)
        opt.text = ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        group = (
            QPalette.ColorGroup.Normal if opt.state & QStyle.StateFlag.State_Active else QPalette.ColorGroup.Inactive
        )
        first = QFont(opt.font)
        if index.column() == Col.NAME:
            first.setWeight(QFont.Weight.DemiBold)
        line = QFontMetrics(opt.font).height()
        top = rect.top() + (rect.height() - 2 * line) // 2
        painter.save()
        brush = index.data(Qt.ItemDataRole.ForegroundRole)
        colour = brush.color() if isinstance(brush, QBrush) and not selected else None
        painter.setPen(colour or opt.palette.color(group, QPalette.ColorRole.HighlightedText if selected
                                                   else QPalette.ColorRole.Text))  # fmt: skip
        painter.setFont(first)
        painter.drawText(QRect(rect.left(), top, rect.width(), line), LEFT, _elide(first, title, rect.width()))
        painter.setFont(opt.font)
        muted = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.PlaceholderText
        painter.setPen(opt.palette.color(group, muted))
        painter.drawText(
            QRect(rect.left(), top + line, rect.width(), line), LEFT, _elide(opt.font, detail, rect.width())
        )
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        base = super().sizeHint(option, index)
        metrics = QFontMetrics(option.font)
        title, detail = str(index.data(Qt.ItemDataRole.DisplayRole) or ""), str(index.data(DETAIL_ROLE) or "")
        extra = max(0, metrics.horizontalAdvance(detail) - metrics.horizontalAdvance(title))
        return QSize(base.width() + extra + 2 * PAD + 8, 2 * metrics.height() + 2 * PAD + 2)


def _elide(font: QFont, text: str, width: int) -> str:
    return QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideRight, max(0, width))


class JobList(QTreeWidget):
    jobSelected = Signal(object)  # Job | None
    enabledToggled = Signal(str, bool)  # job id, on
    editRequested = Signal(object)  # Job (double click)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(Col))
        self.setHeaderLabels(HEADERS)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setItemDelegate(_TwoLines(self))
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(Col.NAME, QHeaderView.ResizeMode.Stretch)
        for col in (Col.NEXT, Col.LAST):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self._filling = False
        self.itemChanged.connect(self._on_item_changed)
        self.currentItemChanged.connect(lambda current, _previous: self.jobSelected.emit(self._job_of(current)))
        self.itemDoubleClicked.connect(lambda item, _col: self.editRequested.emit(self._job_of(item)))

    def set_jobs(self, jobs: list[Job], at: datetime | None = None) -> None:
        keep = self.selected_job()
        self._filling = True
        self.blockSignals(True)
        try:
            self.clear()
            chosen = None
            for job in jobs:
                item = self._item(job, at)
                self.addTopLevelItem(item)
                if keep is not None and job.id == keep.id:
                    chosen = item
            if chosen is not None:
                self.setCurrentItem(chosen)
        finally:
            self.blockSignals(False)
            self._filling = False
        now = self.selected_job()
        if (keep.id if keep else None) != (now.id if now else None):
            self.jobSelected.emit(now)

    def _item(self, job: Job, at: datetime | None) -> QTreeWidgetItem:
        moment = at or fmt.now()
        item = QTreeWidgetItem([job.name])
        item.setData(Col.NAME, DETAIL_ROLE, job.describe())
        next_text, next_detail = self._next(job, moment)
        item.setText(Col.NEXT, next_text)
        item.setData(Col.NEXT, DETAIL_ROLE, next_detail)
        item.setText(Col.LAST, fmt.status_text(job.last_status))
        item.setData(Col.LAST, DETAIL_ROLE, when(job.last_run, now=moment) if job.last_run else "")
        item.setData(Col.NAME, JOB_ROLE, job)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Col.NAME, Qt.CheckState.Checked if job.enabled else Qt.CheckState.Unchecked)
        tip = f"{job.prompt}\n\n{job.describe()} · {job.kind} {job.expr}"
        if job.group_claim:
            tip += f"\nGroup claim {job.group_claim}: each time runs once across the group"
        for col in Col:
            item.setToolTip(col, tip)
        item.setToolTip(Col.NAME, f"{'On' if job.enabled else 'Off'} (tick to switch). {tip}")
        if job.last_status in fmt.STATUS_COLORS:
            item.setForeground(Col.LAST, QBrush(QColor(fmt.STATUS_COLORS[job.last_status])))
        if not job.enabled:
            item.setForeground(Col.NEXT, self.palette().placeholderText())
        return item

    @staticmethod
    def _next(job: Job, moment: datetime) -> tuple[str, str]:
        """ "Mon 23 Nov 08:00" over "in 37 h"; "off"; "done" for a one-off that ran."""
        if not job.enabled or job.next_run is None:
            return fmt.next_run_text(job, moment), ""
        return when(job.next_run, now=moment), relative(job.next_run, moment)

    @staticmethod
    def _job_of(item: QTreeWidgetItem | None) -> Job | None:
        return item.data(Col.NAME, JOB_ROLE) if item is not None else None

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        job = self._job_of(item)
        if self._filling or column != Col.NAME or job is None:
            return
        on = item.checkState(Col.NAME) == Qt.CheckState.Checked
        if on != job.enabled:
            self.enabledToggled.emit(job.id, on)

    # --- for the pane and tests --------------------------------------------------------------------

    def selected_job(self) -> Job | None:
        return self._job_of(self.currentItem())

    def jobs(self) -> list[Job]:
        return [self._job_of(self.topLevelItem(i)) for i in range(self.topLevelItemCount())]  # type: ignore[misc]

    def select_job(self, job_id: str) -> bool:
        for index in range(self.topLevelItemCount()):
            item = self.topLevelItem(index)
            job = self._job_of(item)
            if job is not None and job.id == job_id:
                self.setCurrentItem(item)
                return True
        return False

    def item_of(self, job_id: str) -> QTreeWidgetItem | None:
        for index in range(self.topLevelItemCount()):
            item = self.topLevelItem(index)
            job = self._job_of(item)
            if job is not None and job.id == job_id:
                return item
        return None
