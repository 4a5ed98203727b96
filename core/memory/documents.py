"""The document index: folders of local files, kept in memory as chunks with their source.

A scan walks a folder, and for each file decides by size and modification time (then by content hash)
whether it changed; only changed files are read, chunked and embedded, and a changed file's old chunks are
replaced in the same transaction as the new ones are written. Files that vanished lose their chunks. Files
that cannot be indexed (binary, corrupt, too large, unsupported) are recorded with the reason, so
`shoal docs status` and the Memory view can say why. One scan runs at a time; the embedding model runs in
its own low-priority process with `memory.index_threads` threads, so indexing leaves the machine usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import ShoalError, UserError
from core.memory import store
from core.memory.extract import SkipFile, extract
from core.memory.store import SourceRow
from core.timeline.ids import new_id, now_iso

log = logging.getLogger(__name__)
IGNORED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".tox",
    ".cache",
    "dist",
    "build",
    ".idea",
    ".vscode",
}


@dataclass(frozen=True)
class ScanProgress:
    """Where a scan is; sent to listeners after every file."""

    folder: str
    state: str  # scanning | indexing | done | failed
    total: int = 0
    done: int = 0
    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    removed: int = 0
    chunks: int = 0
    current: str = ""
    error: str = ""
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Regular files under `root` (hidden and tool folders left out, symlinks not followed), and the folders
    that could not be read: files known under those are not taken for deleted."""
    found: list[Path] = []
    unreadable: list[Path] = []

    def failed(error: OSError) -> None:
        unreadable.append(Path(error.filename) if error.filename else root)

    for folder, dirs, files in os.walk(root, followlinks=False, onerror=failed):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            try:
                if path.is_file() and not path.is_symlink():
                    found.append(path)
            except OSError:  # a folder we may list but not enter
                unreadable.append(path.parent)
    return found, unreadable


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DocumentIndex:
    """Folders to index and the scans that keep them current. Owned by the memory service's user (the core)."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory  # core.memory.service.Memory
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[ScanProgress], object]] = []
        self._task: asyncio.Task[Any] | None = None
        self.progress: ScanProgress | None = None

    def on_progress(self, listener: Callable[[ScanProgress], object]) -> None:
        self._listeners.append(listener)

    def off_progress(self, listener: Callable[[ScanProgress], object]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _report(self, progress: ScanProgress) -> None:
        self.progress = progress
        for listener in list(self._listeners):
            try:
                listener(progress)
            except Exception:
                log.exception("progress listener failed")

    # --- folders ---------------------------------------------------------------------------

    async def add_folder(self, path: str | Path) -> dict[str, Any]:
        """Remember a folder to index (scan it with `scan`). A folder inside or around one already added is
        refused, so no file is indexed twice."""
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder.", "Pass a folder that exists (files are found inside it).")
        existing = await self.folders()
        for row in existing:
            known = Path(row["path"])
            if known == folder:
                return row
            if folder.is_relative_to(known) or known.is_relative_to(folder):
                raise UserError(
                    f"{folder} overlaps the indexed folder {known}.",
                    f"Remove {known} first (shoal docs remove), or add a folder outside it.",
                )
        row = {"id": new_id(), "path": str(folder), "added_at": now_iso(), "scanned_at": None, "files": 0, "skipped": 0}
        sql = "INSERT INTO memory_folders (id, path, added_at) VALUES (?, ?, ?)"
        await self.memory.db.write(lambda conn: conn.execute(sql, (row["id"], row["path"], row["added_at"])))
        return row

    async def folders(self) -> list[dict[str, Any]]:
        def read(conn: Any) -> list[dict[str, Any]]:
            return [dict(r) for r in conn.execute("SELECT * FROM memory_folders ORDER BY path")]

        result: list[dict[str, Any]] = await self.memory.db.read(read)
        return result

    async def remove_folder(self, path_or_id: str) -> int:
        """Stop indexing a folder and forget its documents. Returns how many documents were removed."""
        target = str(Path(path_or_id).expanduser().resolve()) if os.sep in path_or_id else path_or_id
        folder = next((f for f in await self.folders() if target in (f["id"], f["path"])), None)
        if folder is None:
            raise UserError(f"{path_or_id} is not an indexed folder.", "See `shoal docs status` for the list.")
        await self.stop()  # a background scan would go on indexing files of the folder being removed

        def delete(conn: Any) -> list[str]:
            ids = [
                str(r[0]) for r in conn.execute("SELECT id FROM memory_sources WHERE folder_id = ?", (folder["id"],))
            ]
            conn.execute("DELETE FROM memory_sources WHERE folder_id = ?", (folder["id"],))
            conn.execute("DELETE FROM memory_folders WHERE id = ?", (folder["id"],))
            return ids

        async with self._lock:  # and a foreground scan finishes first
            removed: list[str] = await self.memory.db.write(delete)
        for source_id in removed:
            self.memory.index.remove_source(source_id)
        self.memory.changed()
        return len(removed)

    # --- scanning --------------------------------------------------------------------------

    def scan_later(self) -> asyncio.Task[Any]:
        """Scan every folder in the background (one scan at a time); progress goes to the listeners."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.scan_all(), name="shoal-docs-scan")
        return self._task

    async def scan_all(self) -> list[ScanProgress]:
        return [await self.scan(folder["id"]) for folder in await self.folders()]

    async def scan(self, folder_id: str) -> ScanProgress:
        async with self._lock:
            folder = next((f for f in await self.folders() if f["id"] == folder_id), None)
            if folder is None:
                raise UserError(f"No indexed folder has the id {folder_id}.", "See `shoal docs status`.")
            try:
                return await self._scan(folder)
            except (ShoalError, OSError) as exc:  # the scan stops; what it indexed so far stays
                error = exc.describe() if isinstance(exc, ShoalError) else f"{type(exc).__name__}: {exc}"
                log.warning("scan of %s failed: %s", folder["path"], error)
                failed = replace(self.progress or ScanProgress(folder["path"], "failed"), state="failed", error=error)
                self._report(failed)
                return failed

    async def _scan(self, folder: dict[str, Any]) -> ScanProgress:
        root = Path(folder["path"])
        progress = ScanProgress(str(root), "scanning")
        self._report(progress)
        if not root.is_dir():
            progress = replace(progress, state="failed", error=f"{root} is no longer there (moved or unmounted?)")
            self._report(progress)
            return progress
        files, unreadable = await asyncio.to_thread(_walk, root)
        known = await self.memory.db.read(
            lambda conn: {
                s["uri"]: SourceRow(**{k: s[k] for k in SourceRow.__dataclass_fields__})
                for s in store.sources(conn, kind="document", folder_id=folder["id"], limit=10**9)
            }
        )
        if known and not files:  # an empty mount point, say: never forget a whole folder on that evidence
            error = f"{root} holds no readable files now ({len(known)} were indexed): nothing was removed"
            progress = replace(progress, state="failed", error=error)
            self._report(progress)
            return progress
        progress = replace(progress, state="indexing", total=len(files))
        for path in files:
            progress = await self._one(path, known.pop(str(path), None), folder["id"], progress)
            progress = replace(progress, done=progress.done + 1)
            self._report(progress)
        for gone in known.values():  # files that vanished since the last scan (not those we could not see)
            if any(Path(gone.uri).is_relative_to(folder_path) for folder_path in unreadable):
                continue
            await self.memory.db.write(lambda conn, s=gone.id: store.delete_source(conn, s))
            self.memory.index.remove_source(gone.id)
            progress = replace(progress, removed=progress.removed + 1)
        await self.memory.db.write(
            lambda conn: conn.execute(
                "UPDATE memory_folders SET scanned_at = ?, files = ?, skipped = ? WHERE id = ?",
                (now_iso(), progress.indexed + progress.unchanged, progress.skipped, folder["id"]),
            )
        )
        error = f"could not read {len(unreadable)} folder(s), e.g. {unreadable[0]}" if unreadable else ""
        progress = replace(progress, state="done", current="", error=error)
        self._report(progress)
        self.memory.changed()
        return progress

    async def _one(self, path: Path, old: SourceRow | None, folder_id: str, progress: ScanProgress) -> ScanProgress:
        progress = replace(progress, current=str(path))
        try:
            stat = path.stat()
        except OSError:
            return progress  # vanished while we walked: the next scan removes it
        unchanged = old is not None and old.size == stat.st_size and old.mtime == stat.st_mtime
        if unchanged and old is not None and old.status != "skipped":  # a skipped file is tried again
            return replace(progress, unchanged=progress.unchanged + 1)
        limit = int(self.memory.settings.max_file_mb * 1_000_000)
        now = now_iso()
        source = SourceRow(
            id=old.id if old else new_id(),
            kind="document",
            uri=str(path),
            title=path.name,
            folder_id=folder_id,
            size=stat.st_size,
            mtime=stat.st_mtime,
            created_at=old.created_at if old else now,
            updated_at=now,
        )
        try:
            digest = await asyncio.to_thread(_hash, path) if stat.st_size <= limit else None
            if old is not None and digest is not None and old.sha256 == digest and old.status != "skipped":
                await self.memory.db.write(
                    lambda conn: conn.execute(
                        "UPDATE memory_sources SET size = ?, mtime = ? WHERE id = ?",
                        (stat.st_size, stat.st_mtime, old.id),
                    )
                )
                return replace(progress, unchanged=progress.unchanged + 1)
            extracted = await asyncio.to_thread(extract, path, max_bytes=limit)
        except SkipFile as skip:
            return await self._skipped(source, skip.reason, progress)
        except OSError as exc:
            return await self._skipped(source, f"cannot read: {exc.strerror or exc}", progress)
        source.title, source.sha256 = extracted.title or path.name, digest
        chunks = self.memory.chunks_of(extracted.text, extracted.kind)
        saved = await self.memory.put(source, chunks)
        return replace(progress, indexed=progress.indexed + 1, chunks=progress.chunks + saved.chunks)

    async def _skipped(self, source: SourceRow, reason: str, progress: ScanProgress) -> ScanProgress:
        log.info("skipped %s: %s", source.uri, reason)
        source.status, source.reason = "skipped", reason
        await self.memory.db.write(lambda conn: store.replace_source(conn, source, [], ""))
        self.memory.index.remove_source(source.id)
        return replace(
            progress, skipped=progress.skipped + 1, skipped_files=[*progress.skipped_files, (source.uri, reason)][-200:]
        )

    async def status(self) -> dict[str, Any]:
        """Folders, counts, and the files skipped with their reasons."""

        def read(conn: Any) -> dict[str, Any]:
            skipped = conn.execute(
                "SELECT uri, reason FROM memory_sources WHERE kind = 'document' AND status = 'skipped' ORDER BY uri"
            ).fetchall()
            documents = conn.execute(
                "SELECT count(*) FROM memory_sources WHERE kind = 'document' AND status = 'indexed'"
            ).fetchone()[0]
            chunks = conn.execute(
                "SELECT count(*) FROM memory_chunks c JOIN memory_sources s ON s.id = c.source_id "
                "WHERE s.kind = 'document'"
            ).fetchone()[0]
            return {"documents": int(documents), "chunks": int(chunks), "skipped": [tuple(r) for r in skipped]}

        data = await self.memory.db.read(read)
        return {**data, "folders": await self.folders(), "progress": self.progress}

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
