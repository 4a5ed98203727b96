"""Long-term memory for the widgets: search, the stored notes and documents, indexed folders and their scans.

Owned by `Bridge` (as `bridge.memory`) and reached only through it, so widgets never hold the core's `Memory`
or its `DocumentIndex`. The core makes its memory in `start()` (the window exists before that), so listeners
are hooked by `sync()` whenever `core.memory` is a new object: by the Memory pane once the core has started,
and by every query and command here. Callbacks from the core arrive on the event loop, which under qasync is
the GUI thread, so they are emitted directly.

A folder scan reports a change after every file it indexes: `changed` is coalesced to one signal per
`CHANGE_COALESCE_MS`, so the pane re-queries a few times a second at most, not once per file. Scan progress
is not coalesced (the progress bar should move file by file).

Commands report a failure (a `ShoalError`, e.g. a folder that overlaps one already indexed) through
`errorRaised` and return None; queries raise, and the pane shows the error next to what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal
from shiboken6 import isValid

from core.errors import ShoalError, UserError, classify
from core.service import AgentCore

log = logging.getLogger(__name__)
CHANGE_COALESCE_MS = 200
SEARCH_LIMIT = 30
T = TypeVar("T")

DISABLED = UserError("Memory is off.", "Turn it on in Settings (memory.enabled), then restart Shoal.")


class MemoryBridge(QObject):
    changed = Signal()  # something was remembered, forgotten, indexed or embedded (coalesced)
    scanProgress = Signal(object)  # core.memory.documents.ScanProgress, after every file of a scan
    errorRaised = Signal(dict)  # ShoalError.to_dict() of a failed command

    def __init__(self, core: AgentCore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.core = core
        self._memory: Any = None
        self._changed_timer = QTimer(self)
        self._changed_timer.setSingleShot(True)
        self._changed_timer.setInterval(CHANGE_COALESCE_MS)
        self._changed_timer.timeout.connect(self.changed.emit)

    # --- following the core's memory ---------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Memory is on (settings.memory.enabled) and the core has started it."""
        return self.core.memory is not None

    def sync(self) -> None:
        """Hook the core's current memory (if it is a new object); the old one's callbacks are ignored."""
        memory = self.core.memory
        if memory is self._memory:
            return
        self._memory = memory
        if memory is not None:
            memory.on_change(lambda m=memory: self._on_change(m))
            memory.documents.on_progress(lambda progress, m=memory: self._on_progress(m, progress))
        self._changed_timer.start()

    def _on_change(self, memory: Any) -> None:
        if isValid(self) and memory is self._memory and not self._changed_timer.isActive():
            self._changed_timer.start()

    def _on_progress(self, memory: Any, progress: Any) -> None:
        if isValid(self) and memory is self._memory:
            self.scanProgress.emit(progress)

    def _need(self) -> Any:
        self.sync()
        if self.core.memory is None:
            raise DISABLED
        return self.core.memory

    async def _command(self, work: Callable[[], Awaitable[T]], what: str) -> T | None:
        try:
            return await work()
        except ShoalError as exc:
            log.info("%s failed: %s", what, exc.describe())
            self.errorRaised.emit(exc.to_dict())
        except Exception as exc:
            error = classify(exc)
            log.warning("%s failed: %s", what, error.message, exc_info=exc)
            self.errorRaised.emit(error.to_dict())
        return None

    # --- queries -----------------------------------------------------------------------------------

    async def search(self, query: str, kind: str | None = None, limit: int = SEARCH_LIMIT) -> list[Any]:
        """The best chunks for `query` (hybrid: meaning and words), optionally of one kind: `Hit`s."""
        from core.memory.retrieval import RecallFilter

        filters = RecallFilter(kinds=frozenset({kind})) if kind else None
        return list(await self._need().recall(query, limit=limit, filters=filters, mode="hybrid"))

    async def sources(self, kind: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Stored notes, documents and shared items, newest first (forgotten and skipped files left out)."""
        return list(await self._need().sources(kind=kind, status="indexed", limit=limit))

    async def source_chunks(self, source_id: str) -> list[dict[str, Any]]:
        """The text of one source, chunk by chunk, in order."""
        return list(await self._need().source_chunks(source_id))

    async def stats(self) -> dict[str, Any]:
        """Counts, the embedding model's id and state, and `problem` (why semantic search is unavailable)."""
        return dict(await self._need().stats())

    async def folders(self) -> list[dict[str, Any]]:
        return list(await self._need().documents.folders())

    async def status(self) -> dict[str, Any]:
        """The document index: folders, counts, skipped files with their reasons, the last scan's progress."""
        return dict(await self._need().documents.status())

    def scanning(self) -> bool:
        memory = self.core.memory
        progress = memory.documents.progress if memory is not None else None
        return progress is not None and progress.state in ("scanning", "indexing")

    async def recalled_in(self, session_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """Per turn of a thread, oldest first: when it started, and the memories automatic recall gave it."""
        timeline = self.core.timeline
        starts = await timeline.events(session_id=session_id, kind="user.message", limit=1_000_000)
        recalls = await timeline.events(session_id=session_id, kind="memory.recall", limit=1_000_000)
        by_trace = {event.trace_id: list(event.payload.get("items") or []) for event in recalls}
        return [(event.ts, by_trace.get(event.trace_id, [])) for event in starts]

    # --- commands ----------------------------------------------------------------------------------

    async def remember(self, text: str, tags: list[str] | None = None) -> Any:
        """Store a note; returns `Remembered` (its `warning` says when it is kept for word search only)."""
        return await self._command(lambda: self._need().remember(text, tags=tags or []), "remembering")

    async def forget(self, source_id: str) -> Any:
        """Delete a note or shared item; a document's chunks go, and the file is not indexed again unless
        it changes. Returns the forgotten source's row, or None (the reason went to `errorRaised`)."""
        return await self._command(lambda: self._need().forget(source_id), "forgetting")

    async def add_folder(self, path: str) -> dict[str, Any] | None:
        """Index a folder: remember it, then scan every folder in the background (progress: `scanProgress`)."""

        async def add() -> dict[str, Any]:
            documents = self._need().documents
            row = dict(await documents.add_folder(path))
            documents.scan_later()
            self._on_change(self._memory)
            return row

        return await self._command(add, "adding the folder")

    async def remove_folder(self, path_or_id: str) -> int | None:
        """Stop indexing a folder and forget its documents; returns how many were removed."""
        return await self._command(lambda: self._need().documents.remove_folder(path_or_id), "removing the folder")

    async def rescan(self) -> bool:
        """Scan every folder again now (changed files are re-read, vanished ones forgotten)."""

        async def scan() -> bool:
            self._need().documents.scan_later()
            return True

        return bool(await self._command(scan, "scanning"))
