"""The timeline as a tree: one top-level row per turn (its user message), children following the span tree.

Live events are inserted one row at a time under their parent span's row (a span-id → item map makes that a
dictionary lookup), so a long session never rebuilds the tree while the agent works. Whole reloads happen only
when the scope changes or someone asks for one.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QMenu, QTreeWidget, QTreeWidgetItem, QWidget

from core.timeline.store import Event, EventNode
from ui.widgets import event_format as fmt

EVENT_ROLE = Qt.ItemDataRole.UserRole  # the row's Event
CONTEXT_ROLE = Qt.ItemDataRole.UserRole + 1  # shown only because a descendant matches the filter
MAX_TRACES = 300  # oldest turns drop off the live view; a reload brings back the recent ones
HIGHLIGHT = QColor(250, 204, 21, 90)  # translucent amber: readable on light and dark palettes
CONTEXT_GREY = QColor("#8a8a8a")


class Col(IntEnum):
    EVENT = 0
    STATUS = 1
    TOKENS = 2
    DURATION = 3
    TIME = 4


HEADERS = {Col.EVENT: "Event", Col.STATUS: "Status", Col.TOKENS: "Tokens", Col.DURATION: "ms", Col.TIME: "Time"}
_icons: dict[str, QIcon] = {}


def kind_icon(kind: str, color: str | None = None) -> QIcon:
    """A coloured dot per kind (or per `color`: a policy decision's effect), drawn once: no image assets to ship,
    and it follows `KIND_COLORS`."""
    color = color or fmt.KIND_COLORS.get(kind, "#9ca3af")
    if color not in _icons:
        pixmap = QPixmap(12, 12)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(color))
        painter.drawEllipse(2, 2, 8, 8)
        painter.end()
        _icons[color] = QIcon(pixmap)
    return _icons[color]


class TraceTree(QTreeWidget):
    eventSelected = Signal(object)  # Event | None
    walkRequested = Signal(str)  # event id, from the context menu

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._by_span: dict[str, QTreeWidgetItem] = {}
        self._by_event: dict[str, QTreeWidgetItem] = {}
        self._roots: dict[str, QTreeWidgetItem] = {}  # trace id → its first root row
        self._highlighted: list[str] = []
        self._filter = "All"
        self.setColumnCount(len(Col))
        self.setHeaderLabels([HEADERS[c] for c in Col])
        self.setUniformRowHeights(True)  # cheap layout for thousands of rows
        self.setIndentation(14)  # five levels deep still leaves room for the label in a narrow dock
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._setup_header()
        self.currentItemChanged.connect(lambda item, _old: self.eventSelected.emit(self.event_at(item)))
        self.customContextMenuRequested.connect(self._context_menu)

    def _setup_header(self) -> None:
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(Col.EVENT, QHeaderView.ResizeMode.Stretch)
        for col in (Col.STATUS, Col.TOKENS, Col.DURATION, Col.TIME):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(36)

    # --- lookups -----------------------------------------------------------------------------

    @staticmethod
    def event_at(item: QTreeWidgetItem | None) -> Event | None:
        return None if item is None else item.data(Col.EVENT, EVENT_ROLE)

    def item_for(self, event_id: str) -> QTreeWidgetItem | None:
        return self._by_event.get(event_id)

    def current_event(self) -> Event | None:
        return self.event_at(self.currentItem())

    def has_trace(self, trace_id: str) -> bool:
        return trace_id in self._roots

    def highlighted(self) -> list[str]:
        return list(self._highlighted)

    # --- filling -----------------------------------------------------------------------------

    def load(self, traces: Iterable[list[EventNode]]) -> None:
        """Replace everything with whole traces (oldest first); the newest one opens."""
        self.clear_events()
        last: QTreeWidgetItem | None = None
        for roots in traces:
            for node in roots:
                last = self._add_node(node, None)
        self._refilter_all()
        if last is not None:
            last.setExpanded(True)
            self._expand_subtree(last)
            self.scrollToItem(last)

    def add_trace(self, roots: list[EventNode]) -> None:
        """One more whole trace (for example to reveal an older turn someone asked to see)."""
        for node in roots:
            if node.event.id not in self._by_event:
                self._add_node(node, None)
        self._refilter_all()

    def clear_events(self) -> None:
        self.clear()
        self._by_span.clear()
        self._by_event.clear()
        self._roots.clear()
        self._highlighted.clear()

    def add_event(self, event: Event) -> QTreeWidgetItem | None:
        """Insert one live event under its parent span's row; None if it is already shown."""
        if event.id in self._by_event:
            return None
        follow = self._at_bottom()
        parent = None
        if event.parent_span_id is not None:  # an unknown parent (not loaded here): hang it under its turn
            parent = self._by_span.get(event.parent_span_id, self._roots.get(event.trace_id))
        item = self._new_item(event, parent)
        if parent is not None:
            parent.setExpanded(True)
        else:
            self._drop_oldest()
        self._filter_new(item)
        if follow:
            self.scrollToItem(item)
        return item

    def _add_node(self, node: EventNode, parent: QTreeWidgetItem | None) -> QTreeWidgetItem:
        item = self._new_item(node.event, parent)
        for child in node.children:
            self._add_node(child, item)
        return item

    def _new_item(self, event: Event, parent: QTreeWidgetItem | None) -> QTreeWidgetItem:
        item = QTreeWidgetItem()
        item.setData(Col.EVENT, EVENT_ROLE, event)
        item.setText(Col.EVENT, fmt.label(event))
        item.setToolTip(Col.EVENT, fmt.tooltip(event))
        item.setIcon(Col.EVENT, kind_icon(event.kind, fmt.dot_color(event)))
        item.setText(Col.STATUS, fmt.status(event))
        item.setToolTip(Col.STATUS, event.status)
        item.setTextAlignment(Col.STATUS, Qt.AlignmentFlag.AlignCenter)
        item.setText(Col.TOKENS, fmt.tokens(event))
        item.setText(Col.DURATION, fmt.duration(event))
        item.setText(Col.TIME, fmt.time_text(event, with_date=parent is None))
        item.setToolTip(Col.TIME, event.ts)
        for col in (Col.TOKENS, Col.DURATION):
            item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if event.kind == "llm.response" and event.payload.get("first_token_ms") is not None:
            item.setToolTip(Col.DURATION, f"first token after {event.payload['first_token_ms']:.0f} ms")
        if parent is None:
            self.addTopLevelItem(item)
            self._roots.setdefault(event.trace_id, item)
        else:
            parent.addChild(item)
        self._by_span[event.span_id] = item
        self._by_event[event.id] = item
        self._paint(item)
        return item

    def _drop_oldest(self) -> None:
        while self.topLevelItemCount() > MAX_TRACES:
            self._forget(self.takeTopLevelItem(0))

    def _forget(self, item: QTreeWidgetItem) -> None:
        event = self.event_at(item)
        if event is not None:
            self._by_span.pop(event.span_id, None)
            self._by_event.pop(event.id, None)
            if self._roots.get(event.trace_id) is item:
                del self._roots[event.trace_id]
        for i in range(item.childCount()):
            self._forget(item.child(i))

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 2

    def _expand_subtree(self, item: QTreeWidgetItem) -> None:
        for i in range(item.childCount()):
            item.child(i).setExpanded(True)
            self._expand_subtree(item.child(i))

    # --- colours -----------------------------------------------------------------------------

    def _paint(self, item: QTreeWidgetItem) -> None:
        """Errors red, a row kept only as context grey, a step of the walked chain highlighted."""
        event = self.event_at(item)
        if event is None:
            return
        context = bool(item.data(Col.EVENT, CONTEXT_ROLE))
        base = QBrush(CONTEXT_GREY) if context else QBrush(QColor(fmt.ERROR_COLOR)) if fmt.is_error(event) else QBrush()
        background = QBrush(HIGHLIGHT) if event.id in self._highlighted else QBrush()
        for col in Col:
            item.setForeground(col, base)
            item.setBackground(col, background)
        status_color = fmt.STATUS_COLORS.get(event.status)
        if status_color and not context:
            item.setForeground(Col.STATUS, QBrush(QColor(status_color)))
        accent = fmt.text_color(event)
        if accent and not context:  # a policy decision: its effect's colour, "denied" included
            for col in (Col.EVENT, Col.STATUS):
                item.setForeground(col, QBrush(QColor(accent)))
        font = item.font(Col.EVENT)
        font.setItalic(context)
        font.setBold(event.parent_span_id is None)
        item.setFont(Col.EVENT, font)

    def highlight(self, event_ids: Iterable[str]) -> None:
        """Mark a chain of steps (walk back to origin); the previous chain loses its mark."""
        old, self._highlighted = self._highlighted, list(event_ids)
        for event_id in {*old, *self._highlighted}:
            item = self._by_event.get(event_id)
            if item is not None:
                self._paint(item)

    # --- filtering ---------------------------------------------------------------------------

    def set_filter(self, category: str) -> None:
        self._filter = category
        self._refilter_all()

    def _refilter_all(self) -> None:
        for i in range(self.topLevelItemCount()):
            self._refilter(self.topLevelItem(i))

    def _refilter(self, item: QTreeWidgetItem) -> bool:
        """Hide rows that do not match; keep (greyed) the ancestors of rows that do. Returns visibility."""
        below = [self._refilter(item.child(i)) for i in range(item.childCount())]
        event = self.event_at(item)
        own = event is not None and fmt.matches(event, self._filter)
        self._set_shown(item, own, context=not own and any(below))
        return own or any(below)

    def _filter_new(self, item: QTreeWidgetItem) -> None:
        """Filter one new row in O(depth): it has no children yet, so only its ancestors may change."""
        event = self.event_at(item)
        own = event is not None and fmt.matches(event, self._filter)
        self._set_shown(item, own, context=False)
        parent = item.parent()
        while own and parent is not None and parent.isHidden():
            self._set_shown(parent, False, context=True)
            parent = parent.parent()

    def _set_shown(self, item: QTreeWidgetItem, own: bool, *, context: bool) -> None:
        item.setHidden(not (own or context))
        if bool(item.data(Col.EVENT, CONTEXT_ROLE)) != context:
            item.setData(Col.EVENT, CONTEXT_ROLE, context)
            self._paint(item)

    # --- selection and menu --------------------------------------------------------------------

    def select(self, event_id: str) -> bool:
        """Make the event's row current and visible (opening its ancestors); False if it is not shown here."""
        item = self._by_event.get(event_id)
        if item is None:
            return False
        parent = item.parent()
        while parent is not None:
            parent.setExpanded(True)
            parent = parent.parent()
        self.setCurrentItem(item)
        self.scrollToItem(item)
        return True

    def _context_menu(self, pos: QPoint) -> None:
        event = self.event_at(self.itemAt(pos))
        if event is None:
            return
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.addAction("Walk back to origin", lambda: self.walkRequested.emit(event.id))
        menu.addAction("Expand all", self.expandAll)
        menu.addAction("Collapse all", self.collapseAll)
        menu.popup(self.viewport().mapToGlobal(pos))  # popup, not exec: no nested event loop under qasync
