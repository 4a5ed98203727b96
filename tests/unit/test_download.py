"""Model downloads against a real local HTTP server (stdlib, in a thread): progress, resume with Range,
size and SHA-256 checks, atomic finish, cancel, disk space, HTTP and connection errors; and the catalogue."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import threading
import time
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.errors import Actor
from core.models import (
    CatalogError,
    DownloadCancelledError,
    DownloadError,
    DownloadHTTPError,
    DownloadProgress,
    DownloadVerificationError,
    NotEnoughSpaceError,
    download_file,
    load_catalog,
)
from core.models.download import part_path, partial_size

GGUF_HEAD = b"GGUF\x03\x00\x00\x00"


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic bytes that start like a GGUF file."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    body = (block * (size // len(block) + 1))[: size - len(GGUF_HEAD)]
    return GGUF_HEAD + body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class LocalServer:
    """Serves `files` (with Range, ETag/If-Range) and an OpenAI-style /v1/models; records every request.

    Knobs: ignore_range (always 200), drop_after (close the connection after N body bytes, once),
    delay (seconds per 64 KiB chunk), stall (seconds before answering), models/api_key for /v1/models.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    api_key: str | None = None
    ignore_range: bool = False
    drop_after: int | None = None
    delay: float = 0.0
    stall: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return self.url("/v1")

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        self.etags[path] = '"' + sha(data)[:16] + '"'
        return self.url(path)

    def ranges(self) -> list[str | None]:
        return [s.headers.get("range") for s in self.seen if not s.path.startswith("/v1/")]


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
            server.seen.append(seen)
            if server.stall:
                time.sleep(server.stall)
            if self.path == "/v1/models":
                return self._models(seen)
            data = server.files.get(self.path)
            if data is None:
                return self._send(seen, 404, b"not here", {"Content-Type": "text/plain"})
            etag = server.etags[self.path]
            start = 0
            wanted = seen.headers.get("range", "")
            if_range = seen.headers.get("if-range")
            if wanted.startswith("bytes=") and not server.ignore_range and (if_range in (None, etag)):
                start = int(wanted[6:].split("-")[0])
                if start >= len(data):
                    return self._send(seen, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
            headers = {"Content-Type": "application/octet-stream", "ETag": etag, "Accept-Ranges": "bytes"}
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(seen, 206 if start else 200, data[start:], headers, stream=True)

        def _models(self, seen: Seen) -> None:
            if server.api_key and seen.headers.get("authorization") != f"Bearer {server.api_key}":
                body = json.dumps({"error": {"message": "Incorrect API key provided", "type": "auth"}}).encode()
                return self._send(seen, 401, body, {"Content-Type": "application/json"})
            data = [{"id": m, "object": "model", "owned_by": "me"} for m in server.models]
            listing = {"object": "list", "data": data}
            self._send(seen, 200, json.dumps(listing).encode(), {"Content-Type": "application/json"})

        def _send(self, seen: Seen, status: int, body: bytes, headers: dict[str, str], stream: bool = False) -> None:
            seen.status = status
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            sent = 0
            for offset in range(0, len(body), 65536):
                piece = body[offset : offset + 65536]
                if stream and server.drop_after is not None and sent + len(piece) > server.drop_after:
                    self.wfile.write(piece[: server.drop_after - sent])
                    self.wfile.flush()
                    server.drop_after = None  # only once
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    self.wfile.write(piece)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(piece)
                if stream and server.delay:
                    time.sleep(server.delay)

    return Handler


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with running_server() as srv:
        yield srv


@contextmanager
def running_server(**knobs: Any) -> Iterator[LocalServer]:
    """A LocalServer on a free loopback port, stopped on exit."""
    state = LocalServer(**knobs)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    httpd.block_on_close = False
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- downloads -------------------------------------------------------------------------------


async def test_full_download_reports_progress_and_checks_the_hash(server: LocalServer, tmp_path: Path) -> None:
    data = payload(3_000_000)
    url = server.serve("/m.gguf", data)
    reports: list[DownloadProgress] = []
    result = await download_file(
        url, tmp_path / "m.gguf", expected_size=len(data), expected_sha256=sha(data), progress=reports.append
    )
    assert result.path.read_bytes() == data
    assert (result.sha256, result.sha256_checked, result.size_checked) == (sha(data), True, True)
    assert not part_path(result.path).exists() and not (tmp_path / "m.gguf.part.json").exists()
    downloading = [r for r in reports if r.phase == "downloading"]
    assert downloading[-1].done == downloading[-1].total == len(data) and downloading[-1].fraction == 1.0
    assert [r.done for r in downloading] == sorted(r.done for r in downloading)
    assert any(r.speed > 0 for r in downloading)
    assert reports[-1].phase == "done" and reports[-1].sha256 == sha(data) and reports[-1].sha256_checked
    assert server.ranges() == [None]


async def test_a_dropped_connection_resumes_with_range(server: LocalServer, tmp_path: Path) -> None:
    data = payload(2_000_000)
    url = server.serve("/m.gguf", data)
    server.drop_after = 900_000
    target = tmp_path / "m.gguf"
    with pytest.raises(DownloadError) as caught:
        await download_file(url, target, expected_sha256=sha(data))
    assert caught.value.actor is Actor.NETWORK and "resumes" in caught.value.fix
    kept = partial_size(target)
    assert 0 < kept <= 900_000 and not target.exists()
    reports: list[DownloadProgress] = []
    result = await download_file(url, target, expected_sha256=sha(data), progress=reports.append)
    assert server.ranges() == [None, f"bytes={kept}-"]
    assert server.seen[-1].status == 206 and server.seen[-1].headers.get("if-range") == server.etags["/m.gguf"]
    assert result.sha256 == sha(data) and result.resumed_from == kept and target.read_bytes() == data
    assert reports[0].phase == "checking" and reports[-1].resumed_from == kept


async def test_cancel_keeps_the_part_and_a_new_download_fetches_only_the_rest(
    server: LocalServer, tmp_path: Path
) -> None:
    data = payload(1_600_000)
    url = server.serve("/m.gguf", data)
    server.delay = 0.01
    target = tmp_path / "m.gguf"
    cancel = asyncio.Event()

    def on_progress(p: DownloadProgress) -> None:
        if p.done > 400_000:
            cancel.set()

    with pytest.raises(DownloadCancelledError, match="cancelled"):
        await download_file(url, target, progress=on_progress, cancel=cancel, chunk_size=65536)
    kept = partial_size(target)
    assert kept > 400_000 and not target.exists()
    server.delay = 0
    result = await download_file(url, target, expected_size=len(data), expected_sha256=sha(data))
    assert server.ranges()[-1] == f"bytes={kept}-"
    assert result.sha256 == sha(data) and target.read_bytes() == data


async def test_task_cancel_keeps_the_part(server: LocalServer, tmp_path: Path) -> None:
    data = payload(1_600_000)
    url = server.serve("/m.gguf", data)
    server.delay = 0.01
    target = tmp_path / "m.gguf"
    started = asyncio.Event()
    task = asyncio.ensure_future(
        download_file(url, target, progress=lambda p: p.done > 200_000 and started.set(), chunk_size=65536)
    )
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert partial_size(target) > 200_000
    server.delay = 0
    result = await download_file(url, target, expected_sha256=sha(data))
    assert result.resumed_from > 200_000 and target.read_bytes() == data


async def test_wrong_sha_deletes_the_part_and_leaves_no_file(server: LocalServer, tmp_path: Path) -> None:
    data = payload(500_000)
    url = server.serve("/m.gguf", data)
    target = tmp_path / "m.gguf"
    with pytest.raises(DownloadVerificationError, match="SHA-256") as caught:
        await download_file(url, target, expected_sha256="0" * 64)
    assert "deleted" in caught.value.message
    assert list(tmp_path.iterdir()) == []


async def test_server_size_differs_from_the_expected_size(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/m.gguf", payload(500_000))
    with pytest.raises(DownloadVerificationError, match="expects"):
        await download_file(url, tmp_path / "m.gguf", expected_size=400_000)
    assert list(tmp_path.iterdir()) == []


async def test_a_server_ignoring_range_restarts_cleanly(server: LocalServer, tmp_path: Path) -> None:
    data = payload(1_000_000)
    url = server.serve("/m.gguf", data)
    server.drop_after = 300_000
    target = tmp_path / "m.gguf"
    with pytest.raises(DownloadError):
        await download_file(url, target)
    kept = partial_size(target)
    part_path(target).write_bytes(b"x" * kept)  # even a damaged part must not survive a restart
    server.ignore_range = True
    result = await download_file(url, target, expected_sha256=sha(data))
    assert server.ranges()[-1] == f"bytes={kept}-" and server.seen[-1].status == 200
    assert result.resumed_from == 0 and target.read_bytes() == data


async def test_a_file_changed_upstream_is_fetched_whole_again(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/m.gguf", payload(800_000, seed=1))
    server.drop_after = 300_000
    target = tmp_path / "m.gguf"
    with pytest.raises(DownloadError):
        await download_file(url, target)
    new = payload(900_000, seed=2)
    server.serve("/m.gguf", new)  # new ETag: If-Range makes the server answer 200 with the whole new file
    result = await download_file(url, target)
    assert server.seen[-1].status == 200 and result.sha256 == sha(new) and target.read_bytes() == new


async def test_a_complete_part_is_finished_without_refetching(server: LocalServer, tmp_path: Path) -> None:
    data = payload(300_000)
    url = server.serve("/m.gguf", data)
    target = tmp_path / "m.gguf"
    server.delay = 0.05
    cancel = asyncio.Event()
    with pytest.raises(DownloadCancelledError):
        await download_file(
            url, target, cancel=cancel, chunk_size=65536, progress=lambda p: p.done > 100 and cancel.set()
        )
    part_path(target).write_bytes(data)  # as if every byte had arrived just before the cancel
    server.delay = 0
    result = await download_file(url, target, expected_sha256=sha(data))
    assert server.seen[-1].status == 416 and target.read_bytes() == data and result.sha256_checked


async def test_an_existing_file_is_checked_not_downloaded_again(server: LocalServer, tmp_path: Path) -> None:
    data = payload(200_000)
    url = server.serve("/m.gguf", data)
    target = tmp_path / "m.gguf"
    target.write_bytes(data)
    result = await download_file(url, target, expected_sha256=sha(data))
    assert result.already_present and server.seen == []
    target.write_bytes(b"other")
    with pytest.raises(DownloadVerificationError, match="already exists"):
        await download_file(url, target, expected_sha256=sha(data))
    assert target.read_bytes() == b"other"  # never overwritten or deleted


async def test_404_is_a_clear_error(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadHTTPError) as caught:
        await download_file(server.url("/missing.gguf"), tmp_path / "m.gguf")
    assert caught.value.status == 404 and "HTTP 404" in caught.value.message and caught.value.fix
    assert list(tmp_path.iterdir()) == []


async def test_not_enough_space_fails_before_any_byte(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(2_500_000)
    url = server.serve("/m.gguf", data)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1_000_000, 1_000_000))
    with pytest.raises(NotEnoughSpaceError) as caught:
        await download_file(url, tmp_path / "m.gguf", expected_size=len(data))
    assert "needs 2.5 MB, 1.0 MB free" in caught.value.message and caught.value.fix
    assert server.seen == [] and list(tmp_path.iterdir()) == []
    # Without a known size the check runs on the server's Content-Length, still before writing.
    with pytest.raises(NotEnoughSpaceError, match=r"needs 2\.5 MB"):
        await download_file(url, tmp_path / "m.gguf")
    assert len(server.seen) == 1 and list(tmp_path.iterdir()) == []


async def test_connection_refused_is_a_network_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="connection refused") as caught:
        await download_file(f"http://127.0.0.1:{free_port()}/m.gguf", tmp_path / "m.gguf")
    assert caught.value.actor is Actor.NETWORK and "connection" in caught.value.fix
    assert list(tmp_path.iterdir()) == []


async def test_a_silent_server_times_out(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("/m.gguf", payload(1000))
    server.stall = 1.5
    with pytest.raises(DownloadError, match=r"sent nothing for 0\.3 s"):
        await download_file(url, tmp_path / "m.gguf", timeout=0.3)


async def test_the_event_loop_keeps_running_during_a_download(server: LocalServer, tmp_path: Path) -> None:
    data = payload(40_000_000)
    url = server.serve("/big.gguf", data)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    result = await download_file(url, tmp_path / "big.gguf", expected_sha256=sha(data))
    done.set()
    await tick
    assert result.sha256_checked and len(gaps) > 5
    assert max(gaps) < 0.25, f"the loop stalled for {max(gaps):.3f} s"


# --- catalogue -------------------------------------------------------------------------------


def test_the_shipped_catalogue_is_valid_and_honest() -> None:
    catalog = load_catalog()
    assert len(catalog.models) >= 4
    for entry in catalog.models:
        assert entry.url.startswith("https://huggingface.co/") and entry.url.endswith("/" + entry.filename)
        assert entry.verified == (entry.sha256 is not None)
        assert entry.expected_size == (entry.size_bytes if entry.verified else None)
    assert sum(e.recommended for e in catalog.models) == 1


@pytest.mark.parametrize(
    ("broken", "match"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"version": 1, "models": []}), "models"),
        (json.dumps({"version": 1, "models": [{"id": "x"}]}), r"models\.0\.name"),
    ],
)
def test_a_broken_catalogue_names_the_fault(tmp_path: Path, broken: str, match: str) -> None:
    path = tmp_path / "models.json"
    path.write_text(broken)
    with pytest.raises(CatalogError, match=match) as caught:
        load_catalog(path)
    assert str(path) in caught.value.message and caught.value.fix


def test_catalogue_rules(tmp_path: Path) -> None:
    entry = load_catalog().models[0].model_dump()
    cases = [
        ({"sha256": "abc"}, "sha256"),
        ({"verified": True, "sha256": None}, "verified entry needs its sha256"),
        ({"url": "ftp://x/y.gguf"}, "http"),
        ({"filename": "../evil.gguf"}, "filename"),
    ]
    for change, match in cases:
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"version": 1, "models": [{**entry, **change}]}))
        with pytest.raises(CatalogError, match=match):
            load_catalog(path)
    path.write_text(json.dumps({"version": 1, "models": [entry, entry]}))
    with pytest.raises(CatalogError, match="duplicate id"):
        load_catalog(path)
