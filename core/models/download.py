"""Resumable, verified downloads of model files.

Bytes go to `<target>.part` (an HTTP Range request continues it after an interruption or a cancel);
the file gets its final name only after the size and SHA-256 checks pass, so a model file that exists
is always complete. The SHA-256 is computed while writing (and over the kept part when resuming);
writing and hashing run in a worker thread, so the event loop (and a Qt window on it) never waits on disk.
httpx is imported when a download starts, not when Shoal starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import ssl
import time
from collections import deque
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.models.download_parts import (  # noqa: F401 - re-exported: the public API lives here
    DownloadCancelledError,
    DownloadError,
    DownloadHTTPError,
    DownloadProgress,
    DownloadResult,
    DownloadVerificationError,
    NotEnoughSpaceError,
    Phase,
    ProgressCallback,
    _close,
    _hash_file,
    _host,
    _in_thread,
    _meta_path,
    _write_and_hash,
    check_free_space,
    discard_partial,
    format_size,
    part_path,
    partial_size,
)

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
PROGRESS_INTERVAL = 0.1  # seconds between progress reports
SPEED_WINDOW = 3.0  # seconds of history behind the reported speed


# --- the download ----------------------------------------------------------------------------


async def download_file(
    url: str,
    target: Path,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: asyncio.Event | None = None,
    timeout: float = 30.0,
    chunk_size: int = CHUNK_SIZE,
) -> DownloadResult:
    """Download `url` to `target`, resuming a kept `<target>.part`.

    Raises DownloadError (network, HTTP status), DownloadVerificationError (wrong size or SHA-256; the
    part is deleted), NotEnoughSpaceError (before any byte is written), StorageError (cannot write) or
    DownloadCancelledError when `cancel` is set (the part is kept). Cancelling the task keeps it too.
    """
    job = _Job(url, Path(target), expected_size, expected_sha256.lower() if expected_sha256 else None, progress)
    job.timeout, job.chunk_size = timeout, chunk_size
    if cancel is None:
        return await job.run()
    inner = asyncio.ensure_future(job.run())
    stop = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({inner, stop}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        inner.cancel()
        stop.cancel()
        await asyncio.wait({inner})
        raise
    stop.cancel()
    if not inner.done():
        inner.cancel()
        await asyncio.wait({inner})
    if inner.cancelled():
        kept = partial_size(job.target)
        raise DownloadCancelledError(
            f"Download cancelled; {format_size(kept)} kept.", "Start it again to resume where it stopped."
        )
    return inner.result()


class _Restart(Exception):
    """The kept part cannot be continued: start over from byte 0."""


class _Job:
    def __init__(
        self,
        url: str,
        target: Path,
        expected_size: int | None,
        expected_sha256: str | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.url = url
        self.target = target
        self.part = part_path(target)
        self.meta = _meta_path(target)
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256
        self._progress = progress
        self.timeout = 30.0
        self.chunk_size = CHUNK_SIZE
        self.done = 0
        self.total: int | None = None
        self.resumed_from = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._last_report = 0.0
        self._complete = False  # a 416 answer said the kept part is already the whole file

    # -- reporting --

    def report(self, phase: Phase, *, force: bool = False, sha256: str = "", checked: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if phase == "downloading":
            self._samples.append((now, self.done))
            while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW:
                self._samples.popleft()
            if not force and now - self._last_report < PROGRESS_INTERVAL:
                return
        self._last_report = now
        speed = 0.0
        if phase == "downloading" and len(self._samples) >= 2:
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
            speed = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        report = DownloadProgress(
            phase, self.done, self.total, speed, self.resumed_from, sha256, sha256_checked=checked
        )
        try:
            self._progress(report)
        except Exception:  # a display glitch must not break the download
            log.exception("download progress callback failed")

    # -- main flow --

    async def run(self) -> DownloadResult:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.target.exists():
            return await self._existing()
        if self.expected_size is not None:
            check_free_space(self.target.parent, self.expected_size - partial_size(self.target))
        # Imports stay on the loop thread: a module imported for the first time in a worker thread has
        # crashed Qt (PySide6 + qasync, reproducibly). The TLS context (~50 ms) is built in a thread.
        import certifi
        import httpx

        cafile = os.environ.get("SSL_CERT_FILE") or certifi.where()
        context = await asyncio.to_thread(ssl.create_default_context, cafile=cafile)
        client = httpx.AsyncClient(
            verify=context,
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=True,
            headers={"Accept-Encoding": "identity", "User-Agent": "Shoal model downloader"},
        )
        async with client:
            for _attempt in range(3):
                try:
                    hasher = await self._fetch(client)
                except _Restart:
                    discard_partial(self.target)
                    continue
                return await self._finish(hasher)
        raise DownloadError(
            f"{_host(self.url)} keeps answering with a different part of the file than asked for.",
            "Retry later; if it persists, download the file in a browser and choose it as a file.",
        )

    async def _existing(self) -> DownloadResult:
        """The target already exists (an earlier download finished): check it rather than overwrite it."""
        self.done = self.total = self.target.stat().st_size
        self.report("verifying", force=True)
        digest = (await _in_thread(_hash_file, self.target)).hexdigest()
        if (self.expected_size is not None and self.done != self.expected_size) or (
            self.expected_sha256 and digest != self.expected_sha256
        ):
            raise DownloadVerificationError(
                f"{self.target} already exists but is not the expected file.",
                "Move or delete that file, then download again.",
            )
        self.report("done", force=True, sha256=digest, checked=bool(self.expected_sha256))
        return DownloadResult(
            self.target,
            self.done,
            digest,
            sha256_checked=bool(self.expected_sha256),
            size_checked=self.expected_size is not None,
            already_present=True,
        )

    def _kept_offset(self) -> int:
        offset = partial_size(self.target)
        if offset and self._read_meta().get("url") != self.url:
            discard_partial(self.target)  # a part from another URL (or without metadata) cannot be trusted
            return 0
        if self.expected_size is not None and offset > self.expected_size:
            discard_partial(self.target)
            return 0
        return offset

    def _read_meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self.meta.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, headers: Any) -> None:
        meta = {
            "url": self.url,
            "etag": headers.get("etag", ""),
            "last_modified": headers.get("last-modified", ""),
            "total": self.total,
        }
        self.meta.write_text(json.dumps(meta), encoding="utf-8")

    async def _fetch(self, client: Any) -> Any:
        """One GET (ranged when a part is kept) streamed into the part. Returns the running hasher."""
        import httpx

        offset = self._kept_offset()
        self.resumed_from = self.done = offset
        request_headers = {}
        if offset:
            self.report("checking", force=True)
            hasher = await _in_thread(_hash_file, self.part, offset)
            request_headers["Range"] = f"bytes={offset}-"
            meta = self._read_meta()
            validator = meta.get("etag") if not str(meta.get("etag", "")).startswith("W/") else ""
            validator = validator or meta.get("last_modified")
            if validator:
                request_headers["If-Range"] = str(validator)  # the file changed upstream → full 200 answer
        else:
            hasher = hashlib.sha256()
        try:
            async with client.stream("GET", self.url, headers=request_headers) as response:
                hasher = self._accept(response, offset, hasher)
                await self._stream(response, hasher)
        except httpx.TimeoutException as exc:
            raise self._dropped(f"{_host(self.url)} sent nothing for {self.timeout:g} s", timeout=True) from exc
        except httpx.ConnectError as exc:
            raise DownloadError(
                f"Cannot connect to {_host(self.url)}: {_reason(exc)}.",
                "Check your internet connection (and any proxy), then retry.",
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            raise self._dropped(f"The connection to {_host(self.url)} broke off") from exc
        except httpx.TooManyRedirects as exc:
            raise DownloadError(f"{_host(self.url)} redirects in a loop.", "Retry later.") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise UserError(f"Cannot download {self.url}: {exc}", "Use an http:// or https:// address.") from exc
        except httpx.HTTPError as exc:
            raise DownloadError(f"Downloading from {_host(self.url)} failed: {exc}", "Retry later.") from exc
        return hasher

    def _dropped(self, what: str, *, timeout: bool = False) -> DownloadError:
        kept = partial_size(self.target)
        detail = f" ({format_size(kept)} kept)" if timeout and kept else f" after {format_size(kept)}" if kept else ""
        fix = "Retry: the download resumes where it stopped." if kept else "Check your connection, then retry."
        return DownloadError(f"{what}{detail}.", fix)

    def _accept(self, response: Any, offset: int, hasher: Any) -> Any:
        """Decide from the status and headers how to continue; raise for errors. Returns the hasher to use."""
        status = response.status_code
        if status == 416 and offset:
            total = _total_from_range(response.headers.get("content-range", ""))
            if total == offset:  # the kept part is already the whole file
                self.total = total
                self._complete = True
                return hasher
            raise _Restart
        if status >= 400:
            raise _http_error(status, response.reason_phrase, self.url)
        if status == 206 and offset:
            start, total = _parse_content_range(response.headers.get("content-range", ""))
            if start != offset:
                raise _Restart
            self.total = total
        elif status == 200 or status == 206:
            if offset:  # the server ignored Range (or the file changed): start over with this answer
                self.part.unlink(missing_ok=True)
                offset = self.resumed_from = self.done = 0
                hasher = hashlib.sha256()
            length = response.headers.get("content-length")
            self.total = offset + int(length) if length and length.isdigit() else None
        else:
            raise DownloadError(
                f"{_host(self.url)} answered HTTP {status} {response.reason_phrase}, not the file.",
                "Retry later, or download the file in a browser and choose it as a file.",
            )
        if self.expected_size is not None and self.total is not None and self.total != self.expected_size:
            discard_partial(self.target)
            raise DownloadVerificationError(
                f"{_host(self.url)} offers {format_size(self.total)} but the catalogue expects "
                f"{format_size(self.expected_size)} ({self.expected_size} bytes).",
                "The file changed upstream: update Shoal, or choose another model.",
            )
        remaining = (self.total if self.total is not None else (self.expected_size or 0)) - offset
        check_free_space(self.target.parent, remaining)
        self._write_meta(response.headers)
        self._complete = False
        return hasher

    async def _stream(self, response: Any, hasher: Any) -> None:
        if self._complete:
            return
        mode = "ab" if self.done else "wb"
        handle = self.part.open(mode)
        try:
            self.report("downloading", force=True)
            async for data in response.aiter_raw(self.chunk_size):
                await _in_thread(_write_and_hash, handle, hasher, data)
                self.done += len(data)
                self.report("downloading")
        finally:
            await _in_thread(_close, handle)
        self.report("downloading", force=True)
        if self.total is not None and self.done < self.total:
            raise self._dropped(f"The connection to {_host(self.url)} closed early")

    async def _finish(self, hasher: Any) -> DownloadResult:
        self.report("verifying", force=True)
        size = partial_size(self.target)
        digest = hasher.hexdigest()
        if self.expected_size is not None and size != self.expected_size:
            discard_partial(self.target)
            raise DownloadVerificationError(
                f"The download is {size} bytes but should be {self.expected_size}; it was deleted.",
                "Download it again; if this repeats, the file changed upstream: update Shoal.",
            )
        if self.total is not None and size != self.total:
            discard_partial(self.target)
            raise DownloadVerificationError(
                f"The download is {size} bytes but the server announced {self.total}; it was deleted.",
                "Download it again.",
            )
        if self.expected_sha256 and digest != self.expected_sha256:
            discard_partial(self.target)
            raise DownloadVerificationError(
                f"The downloaded file's SHA-256 ({digest[:12]}…) does not match the expected "
                f"{self.expected_sha256[:12]}…; it was deleted.",
                "Download it again; if this repeats, the file changed upstream or the download is being tampered with.",
            )
        os.replace(self.part, self.target)
        self.meta.unlink(missing_ok=True)
        self.done = size
        self.report("done", force=True, sha256=digest, checked=bool(self.expected_sha256))
        return DownloadResult(
            self.target,
            size,
            digest,
            sha256_checked=bool(self.expected_sha256),
            size_checked=self.expected_size is not None,
            resumed_from=self.resumed_from,
        )


def _reason(exc: BaseException) -> str:
    """The root cause of a connect failure in words (httpx nests it a few exceptions deep)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing is listening there)"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve (offline, or a typo?)"
    return str(chain[-1]) or type(chain[-1]).__name__


def _parse_content_range(value: str) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' → (100, 1000); total None for '/*'."""
    try:
        unit, _, rest = value.strip().partition(" ")
        span, _, total = rest.partition("/")
        start = int(span.split("-")[0])
        return (start if unit == "bytes" else None), (int(total) if total.isdigit() else None)
    except ValueError:
        return None, None


def _total_from_range(value: str) -> int | None:
    _, _, total = value.partition("/")
    return int(total) if total.strip().isdigit() else None


def _http_error(status: int, reason: str, url: str) -> DownloadHTTPError:
    host = _host(url)
    if status in (401, 403):
        return DownloadHTTPError(
            f"{host} refused the download (HTTP {status} {reason}).",
            "The file may need a login or a licence accepted on its web page: download it in a browser, "
            "then choose it as a file.",
            status,
        )
    if status in (404, 410):
        return DownloadHTTPError(
            f"The file is not on {host} (HTTP {status} {reason}): {url}",
            "It may have moved: update Shoal, or pick another model.",
            status,
        )
    if status == 429:
        return DownloadHTTPError(
            f"{host} is rate limiting downloads (HTTP 429).", "Wait a few minutes, then retry.", status
        )
    if status >= 500:
        return DownloadHTTPError(
            f"{host} failed (HTTP {status} {reason}).", "The server has a problem: retry later.", status
        )
    return DownloadHTTPError(f"{host} answered HTTP {status} {reason}.", "Retry later, or pick another model.", status)
