"""One SQLite database, one writer thread.

All access goes through a single worker thread that owns the connection, so the asyncio loop never
blocks on disk and SQLite never sees two writers. Writes that arrive together are committed together
(group commit): each job runs inside its own SAVEPOINT, so one failing job rolls back alone, and a
failing COMMIT (disk full) fails every job of the batch — nothing is ever half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.errors import ShoalError, StorageError

T = TypeVar("T")
_STOP = object()
BATCH_LIMIT = 256  # jobs per transaction; bounds latency of the first job in a burst


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class _BatchAborted(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def storage_error(exc: BaseException, path: Path) -> ShoalError:
    """Translate sqlite/OS failures into errors a person can act on."""
    if isinstance(exc, ShoalError):
        return exc
    text = str(exc)
    if "disk is full" in text or getattr(exc, "errno", None) == 28:
        return StorageError(f"Disk full while writing {path}.", "Free disk space and retry; nothing was half-written.")
    if "readonly" in text or "unable to open" in text or isinstance(exc, PermissionError):
        return StorageError(f"Cannot write the database {path}: {text}", "Check the data folder's permissions.")
    if "malformed" in text or "not a database" in text:
        return StorageError(f"The database {path} is damaged: {text}", "Move it aside; Shoal will start a new one.")
    return StorageError(f"Database error on {path}: {text}", "Run `shoal doctor`; report it if it persists.")


class Database:
    """Owns the SQLite connection and the thread that uses it. `start()`/`stop()` are idempotent."""

    def __init__(self, path: Path, *, migrate: Callable[[sqlite3.Connection], object] | None = None) -> None:
        self.path = path
        self._migrate = migrate
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._ready.clear()
        self._open_error = None
        self._thread = threading.Thread(target=self._run, name="shoal-db", daemon=True)
        self._thread.start()
        await asyncio.get_running_loop().run_in_executor(None, self._ready.wait)
        if self._open_error is not None:
            self._thread.join(timeout=5)
            self._thread = None
            raise storage_error(self._open_error, self.path)

    async def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, thread.join, timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # --- use -------------------------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside a transaction; returns once committed."""
        return await self._submit(fn, write=True)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, write=False)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        if self._thread is None:
            raise StorageError("The database is not open.", "This is a bug: the core was used before start().")
        loop = asyncio.get_running_loop()
        job = _Job(fn, write, loop, loop.create_future())
        self._jobs.put(job)
        result: T = await job.future
        return result

    # --- the writer thread -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives an app crash; only an OS crash or power cut can lose the
        # last commits, never corrupt the file. Measured in bench/timeline.py.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        if self._migrate is not None:
            self._migrate(conn)
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._serve(conn)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < BATCH_LIMIT:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(conn, batch)
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        reads = [j for j in batch if not j.write]
        writes = [j for j in batch if j.write]
        for job in reads:
            self._finish(job, *self._call(conn, job))
        if writes:
            self._commit_group(conn, writes)

    def _call(self, conn: sqlite3.Connection, job: _Job) -> tuple[Any, BaseException | None]:
        try:
            return job.fn(conn), None
        except BaseException as exc:
            return None, storage_error(exc, self.path) if isinstance(exc, sqlite3.Error | OSError) else exc

    def _commit_group(self, conn: sqlite3.Connection, writes: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            isolate = len(writes) > 1  # a lone job needs no savepoint: its failure rolls back the transaction
            for job in writes:
                if isolate:
                    conn.execute("SAVEPOINT job")
                result, error = self._call(conn, job)
                if error is not None and not conn.in_transaction:
                    # SQLite itself aborted the transaction (disk full, I/O error): the whole batch is gone.
                    raise _BatchAborted(error)
                if isolate:
                    if error is not None:
                        conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                outcomes.append((result, error))
            conn.execute("ROLLBACK" if not isolate and outcomes[0][1] is not None else "COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            cause = exc.error if isinstance(exc, _BatchAborted) else exc
            failure = storage_error(cause, self.path) if isinstance(cause, sqlite3.Error | OSError) else cause
            outcomes = [(None, failure) for _ in writes]
        for job, (result, error) in zip(writes, outcomes, strict=True):
            self._finish(job, result, error)

    @staticmethod
    def _finish(job: _Job, result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (shutting down): nobody is waiting
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
