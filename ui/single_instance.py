"""One Shoal per user and config: a second launch hands its request to the running copy and exits.

The primary listens on a QLocalServer (a Unix socket readable only by this user, or a named pipe on
Windows). A secondary connects and writes newline-delimited JSON objects, e.g. `{"action": "quick-ask"}`,
which the primary emits as `messageReceived(dict)`. Being the primary is a lock file held for the
process's lifetime; a crashed primary's lock (its process is gone) and socket file are taken over.

    instance = SingleInstance()
    if not instance.claim():
        instance.send({"action": "quick-ask" if quick else "show"})
        sys.exit(0)
    instance.messageReceived.connect(handle)
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDir, QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024  # a client sending more than this without a newline is cut off
PROBE_TIMEOUT_MS = 500


def default_key(config_path: Path | None = None) -> str:
    """`shoal-<user>-<hash of the config path>`: two users, or two configs, never share a primary."""
    from core import paths

    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    config = config_path or paths.config_file()
    try:
        config = config.expanduser().resolve()
    except OSError:
        config = config.expanduser().absolute()
    digest = hashlib.sha256(f"{user}\0{config}".encode()).hexdigest()[:16]
    safe_user = "".join(c for c in user if c.isalnum() or c in "-_")[:32] or "user"
    return f"shoal-{safe_user}-{digest}"


def server_name(key: str) -> str:
    """The name QLocalServer listens on: inside $XDG_RUNTIME_DIR (private to the user) when there is one.

    Otherwise Qt uses the plain key (a socket in the temp folder on Unix, a named pipe on Windows).
    """
    if sys.platform.startswith("win") or os.path.isabs(key):
        return key
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and len(runtime) + len(key) < 100:  # sun_path holds 108 bytes
        return os.path.join(runtime, key)
    return key


class SingleInstance(QObject):
    """Claim being the one running Shoal, or forward a message to the one that is."""

    messageReceived = Signal(dict)

    def __init__(self, key: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.key = key or default_key()
        self.name = server_name(self.key)
        self._server: QLocalServer | None = None
        self._lock: QLockFile | None = None
        self._buffers: dict[QLocalSocket, bytearray] = {}

    @property
    def lock_path(self) -> str:
        if os.path.isabs(self.name):
            return self.name + ".lock"
        return os.path.join(QDir.tempPath(), self.key + ".lock")

    # --- primary -----------------------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self._server is not None and self._server.isListening()

    def claim(self) -> bool:
        """True if this process is (now) the primary; False if another live instance holds the key.

        The claim is a lock file held for the primary's lifetime (a crashed primary's lock is recognised
        by its dead process id), so two launches at the same moment can't both win. The socket is only
        replaced once the lock is ours: Qt's listen() with UserAccessOption would silently take over a
        live socket.
        """
        if self.is_primary:
            return True
        lock = QLockFile(self.lock_path)
        lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        if not lock.tryLock(0):
            if lock.error() == QLockFile.LockError.LockFailedError:
                return False
            log.warning("cannot create the lock file %s (%s); relying on the socket", self.lock_path, lock.error())
        if self._primary_alive():  # a primary that holds no lock (an older Shoal) still answers
            lock.unlock()
            return False
        QLocalServer.removeServer(self.name)  # a socket file left by a primary that crashed
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            log.warning("cannot listen on %s: %s", self.name, server.errorString())
            server.deleteLater()
            lock.unlock()
            return False
        server.newConnection.connect(self._accept)
        self._server = server
        self._lock = lock
        log.debug("single-instance primary on %s", server.fullServerName())
        return True

    def close(self) -> None:
        """Stop being the primary (removes the socket and the lock); the next launch becomes primary."""
        for socket in list(self._buffers):
            socket.abort()
        self._buffers.clear()
        if self._server is not None:
            self._server.close()
            self._server.deleteLater()
            self._server = None
        if self._lock is not None:
            self._lock.unlock()
            self._lock = None

    def _primary_alive(self) -> bool:
        probe = QLocalSocket()
        probe.connectToServer(self.name)
        alive = probe.waitForConnected(PROBE_TIMEOUT_MS)
        if alive:
            probe.disconnectFromServer()
            if probe.state() != QLocalSocket.LocalSocketState.UnconnectedState:
                probe.waitForDisconnected(PROBE_TIMEOUT_MS)
        probe.abort()
        return alive

    def _accept(self) -> None:
        assert self._server is not None
        while self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            if socket is None:
                break
            self._buffers[socket] = bytearray()
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(lambda s=socket: self._finish(s))
            if socket.bytesAvailable():
                self._read(socket)

    def _read(self, socket: QLocalSocket) -> None:
        buffer = self._buffers.get(socket)
        if buffer is None:
            return
        buffer += bytes(socket.readAll().data())
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            self._dispatch(line)
        if len(buffer) > MAX_LINE_BYTES:
            log.warning("single-instance client sent %d bytes without a newline; dropping it", len(buffer))
            buffer.clear()
            socket.abort()

    def _finish(self, socket: QLocalSocket) -> None:
        """The client hung up: whatever it wrote last (without a newline) still counts."""
        if socket in self._buffers:
            self._read(socket)
        buffer = self._buffers.pop(socket, None)
        if buffer:
            self._dispatch(bytes(buffer))
        socket.deleteLater()

    def _dispatch(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        try:
            message: Any = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("ignoring a malformed single-instance message (%s): %r", exc, line[:200])
            return
        if not isinstance(message, dict):
            log.warning("ignoring a single-instance message that is not an object: %r", line[:200])
            return
        self.messageReceived.emit(message)

    # --- secondary ---------------------------------------------------------------------------

    def send(self, message: dict[str, Any], timeout_ms: int = 2000) -> bool:
        """Forward `message` to the primary; False if no primary answered within `timeout_ms`.

        Retries the connection until then (a primary that has just claimed may not listen yet). Blocks
        the calling thread; the primary's event loop need not run meanwhile, so this works from the same
        process too. Meant for a secondary before it exits, not for a running GUI.
        """
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        deadline = time.monotonic() + timeout_ms / 1000
        socket = QLocalSocket()
        while True:
            socket.connectToServer(self.name)
            if socket.waitForConnected(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            socket.abort()
            if time.monotonic() >= deadline:
                log.debug("no primary on %s: %s", self.name, socket.errorString())
                return False
            time.sleep(0.05)
        try:
            socket.write(data)
            while socket.bytesToWrite() > 0:
                if not socket.waitForBytesWritten(timeout_ms):
                    log.warning("could not write to the primary on %s: %s", self.name, socket.errorString())
                    return False
            return True
        finally:
            socket.disconnectFromServer()
            if socket.state() != QLocalSocket.LocalSocketState.UnconnectedState:
                with contextlib.suppress(RuntimeError):
                    socket.waitForDisconnected(timeout_ms)
            socket.abort()
