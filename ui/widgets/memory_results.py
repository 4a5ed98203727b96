"""The Memory pane's results: one row per matching chunk (or, with no query, per recently stored source).

The first column draws two lines, the citation in bold over a muted one-line snippet, so a person can tell
results apart without opening each; kind, match (cosine similarity as a percentage) and date sit in narrow
columns beside it. Rows keep their `MemoryRow` so selection hands the whole record to the detail area.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPalette
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

from ui.widgets import memory_format as fmt

ROW_ROLE = Qt.ItemDataRole.UserRole + 1
SNIPPET_ROLE = Qt.ItemDataRole.UserRole + 2
PAD = 4
LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
Index = QModelIndex | QPersistentModelIndex


class Col(IntEnum):
    MEMORY = 0
    KIND = 1
    MATCH = 2
    DATE = 3


class _TwoLines(QStyledItemDelegate):
    """Citation over snippet in one cell; both elided to the column width, never wrapped or clipped."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        title, snippet = opt.text, str(index.data(SNIPPET_ROLE) or "")
        opt.text = ""
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        active = bool(opt.state & QStyle.StateFlag.State_Active)
        group = QPalette.ColorGroup.Normal if active else QPalette.ColorGroup.Inactive
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        bold = QFont(opt.font)
        bold.setWeight(QFont.Weight.DemiBold)
        line = QFontMetrics(opt.font).height()
        rect = opt.rect.adjusted(PAD, PAD, -PAD, -PAD)
        painter.save()
        painter.setFont(bold)
        painter.setPen(opt.palette.color(group, text_role))
        top = QRect(rect.left(), rect.top(), rect.width(), line)
        painter.drawText(top, LEFT, _elide(bold, title, rect.width()))
        painter.setFont(opt.font)
        muted = opt.palette.color(group, text_role if selected else QPalette.ColorRole.PlaceholderText)
        painter.setPen(muted)
        bottom = QRect(rect.left(), rect.top() + line + 1, rect.width(), line)
        painter.drawText(bottom, LEFT, _elide(opt.font, snippet, rect.width()))
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        base = super().sizeHint(option, index)
        return QSize(base.width(), 2 * QFontMetrics(option.font).height() + 2 * PAD + 1)


def _elide(font: QFont, text: str, width: int) -> str:
    return QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideRight, max(0, width))


class MemoryResults(QTreeWidget):
    rowSelected = Signal(object)  # MemoryRow | None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Memory", "Kind", "Match", "Date"])
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setItemDelegateForColumn(Col.MEMORY, _TwoLines(self))
        self.headerItem().setToolTip(Col.MATCH, "How close in meaning to the search (cosine similarity); — words only")
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(Col.MEMORY, QHeaderView.ResizeMode.Stretch)
        for col in (Col.KIND, Col.MATCH, Col.DATE):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.itemSelectionChanged.connect(lambda: self.rowSelected.emit(self.selected_row()))

    def set_rows(self, rows: list[fmt.MemoryRow]) -> None:
        """Replace the rows, keeping the selected memory selected when it is still there."""
        keep = self.selected_row()
        self.blockSignals(True)
        self.clear()
        chosen = None
        for row in rows:
            item = QTreeWidgetItem(self)
            item.setText(Col.MEMORY, row.citation)
            item.setData(Col.MEMORY, SNIPPET_ROLE, fmt.one_line(row.text) if row.text else _where(row))
            item.setText(Col.KIND, row.kind)
            item.setText(Col.MATCH, fmt.percent(row.similarity) if row.is_hit else "")
            item.setText(Col.DATE, fmt.date_text(row.created_at))
            tip = f"{row.citation}\n\n{fmt.one_line(row.text, 600)}" if row.text else row.citation
            item.setToolTip(Col.MEMORY, tip)
            item.setToolTip(Col.DATE, fmt.date_text(row.created_at, long=True))
            item.setTextAlignment(Col.MATCH, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setData(Col.MEMORY, ROW_ROLE, row)
            if keep is not None and (row.source_id, row.chunk_id) == (keep.source_id, keep.chunk_id):
                chosen = item
        self.blockSignals(False)
        if chosen is not None:
            self.setCurrentItem(chosen)
        elif keep is not None:
            self.rowSelected.emit(None)

    def rows(self) -> list[fmt.MemoryRow]:
        return [self.topLevelItem(i).data(Col.MEMORY, ROW_ROLE) for i in range(self.topLevelItemCount())]

    def selected_row(self) -> fmt.MemoryRow | None:
        items = self.selectedItems()
        return items[0].data(Col.MEMORY, ROW_ROLE) if items else None

    def select_index(self, index: int) -> None:
        item = self.topLevelItem(index)
        if item is not None:
            self.setCurrentItem(item)


def _where(row: fmt.MemoryRow) -> str:
    """The second line of a listed source without text: the file's name first (a long path would hide it),
    how many pieces it was cut into, then where it lives."""
    chunks = f"{row.chunks} chunk{'s' * (row.chunks != 1)}" if row.chunks is not None else ""
    if row.kind == "document":
        return " · ".join(x for x in (fmt.file_name(row.uri), chunks, f"in {Path(row.uri).parent}") if x)
    return " · ".join(x for x in (fmt.where_from(row), chunks) if x)
