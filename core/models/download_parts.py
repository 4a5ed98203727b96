"""The pieces of a download that are not the transfer: progress reports, errors, the kept `.part` file,
free-space checks, hashing and file handling off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit

from core.errors import NetworkError, StorageError, UserError

HASH_BLOCK = 4 * 1024 * 1024

Phase = Literal["checking", "downloading", "verifying", "done"]


@dataclass(frozen=True)
class DownloadProgress:
    phase: Phase  # checking: hashing a kept part before resuming; verifying: final size/hash checks
    done: int  # bytes in the file so far (including a resumed part)
    total: int | None  # None when the server does not say
    speed: float = 0.0  # bytes per second over the last few seconds
    resumed_from: int = 0
    sha256: str = ""  # set in the "done" report
    sha256_checked: bool = False  # the hash was compared with a published one

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None


ProgressCallback = Callable[[DownloadProgress], None]


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    sha256: str
    sha256_checked: bool  # matched an expected SHA-256
    size_checked: bool  # matched an expected size (the server's Content-Length is always enforced)
    resumed_from: int = 0
    already_present: bool = False


# --- errors ----------------------------------------------------------------------------------


class DownloadError(NetworkError):
    """The server could not be reached, refused, or the transfer broke off (any .part is kept)."""


class DownloadHTTPError(DownloadError):
    def __init__(self, message: str, fix: str, status: int) -> None:
        super().__init__(message, fix)
        self.status = status


class DownloadVerificationError(DownloadError):
    """The finished file is not the expected one (size or SHA-256); the .part was deleted."""


class NotEnoughSpaceError(StorageError):
    """Too little free disk space for the rest of the download."""


class DownloadCancelledError(UserError):
    """The download was stopped on request; its .part is kept for a later resume."""


# --- helpers ---------------------------------------------------------------------------------


def format_size(n: float) -> str:
    """Decimal units, as file managers show them: 397.8 MB, 1.02 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{int(n)} bytes"


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _meta_path(target: Path) -> Path:
    return target.with_name(target.name + ".part.json")


def partial_size(target: Path) -> int:
    """Bytes already kept for `target` by an interrupted or cancelled download (0 if none)."""
    try:
        return part_path(target).stat().st_size
    except OSError:
        return 0


def discard_partial(target: Path) -> None:
    part_path(target).unlink(missing_ok=True)
    _meta_path(target).unlink(missing_ok=True)


def check_free_space(folder: Path, needed: int) -> None:
    """Raise NotEnoughSpaceError when `folder`'s disk has less than `needed` bytes free."""
    if needed <= 0:
        return
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NotEnoughSpaceError(
            f"Not enough disk space in {folder}: the download needs {format_size(needed)}, {format_size(free)} free.",
            "Free some space on that disk (or point paths.data_dir at a bigger one), then retry.",
        )


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _hash_file(path: Path, limit: int | None = None) -> Any:
    hasher = hashlib.sha256()
    remaining = limit
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            block = handle.read(HASH_BLOCK if remaining is None else min(HASH_BLOCK, remaining))
            if not block:
                break
            hasher.update(block)
            if remaining is not None:
                remaining -= len(block)
    return hasher


def _write_and_hash(handle: BinaryIO, hasher: Any, data: bytes) -> None:
    handle.write(data)
    hasher.update(data)


def _close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` in a worker thread; if we are cancelled meanwhile, let it finish first (it holds the file)."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise
