"""One Shoal per user and config: claiming, forwarding, stale sockets, bad input, and a real second process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QDir
from PySide6.QtNetwork import QLocalSocket

from tests.ui.conftest import wait_until
from ui.single_instance import SingleInstance, default_key, server_name

ROOT = Path(__file__).resolve().parents[2]

PRIMARY = """
import json, sys
from PySide6.QtCore import QCoreApplication, QTimer
from ui.single_instance import SingleInstance

app = QCoreApplication([])
instance = SingleInstance(sys.argv[1])
if not instance.claim():
    print("NOT PRIMARY", flush=True)
    sys.exit(3)

def received(message):
    print("MESSAGE " + json.dumps(message, sort_keys=True), flush=True)
    instance.close()
    app.quit()

instance.messageReceived.connect(received)
QTimer.singleShot(30000, lambda: app.exit(4))  # never outlive a broken test
print("READY", flush=True)
sys.exit(app.exec())
"""

BARE_SERVER = """
import sys
from PySide6.QtCore import QCoreApplication
from PySide6.QtNetwork import QLocalServer
from ui.single_instance import server_name

app = QCoreApplication([])
server = QLocalServer()  # a primary that holds no lock file (an older Shoal, or a foreign program)
assert server.listen(server_name(sys.argv[1])), server.errorString()
print("READY " + server.fullServerName(), flush=True)
app.exec()
"""


@pytest.fixture
def key() -> str:
    return f"shoal-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def instances() -> Iterator[list[SingleInstance]]:
    """SingleInstances made by a test; closed afterwards so no socket outlives it."""
    made: list[SingleInstance] = []
    yield made
    for instance in made:
        instance.close()


class Child:
    """A python subprocess whose stdout lines are collected by a thread (the test only ever awaits)."""

    def __init__(self, script: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    async def wait_for_line(self, prefix: str, timeout: float = 30) -> str:
        await wait_until(
            lambda: any(line.startswith(prefix) for line in self.lines) or self.process.poll() is not None,
            timeout=timeout,
        )
        for line in self.lines:
            if line.startswith(prefix):
                return line
        raise AssertionError(f"the child exited ({self.process.returncode}) without {prefix!r}: {self.stderr()}")

    async def wait_exit(self, timeout: float = 30) -> int:
        await wait_until(lambda: self.process.poll() is not None, timeout=timeout, message="the child did not exit")
        self._reader.join(timeout=5)
        return self.process.returncode

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def raw_write(key: str, *chunks: bytes) -> QLocalSocket:
    """Connect to the primary like a (possibly broken) client and write `chunks`; the caller disconnects."""
    socket = QLocalSocket()
    socket.connectToServer(server_name(key))
    assert socket.waitForConnected(2000), socket.errorString()
    for chunk in chunks:
        socket.write(chunk)
        while socket.bytesToWrite() > 0:
            assert socket.waitForBytesWritten(2000)
    return socket


async def test_a_second_instance_forwards_to_the_primary(key: str, instances: list[SingleInstance]) -> None:
    primary = SingleInstance(key)
    secondary = SingleInstance(key)
    instances += [primary, secondary]
    received: list[dict[str, object]] = []
    primary.messageReceived.connect(received.append)

    assert secondary.send({"action": "show"}, timeout_ms=200) is False  # nobody to send to yet
    assert primary.claim() and primary.is_primary
    assert primary.claim()  # claiming again is harmless
    assert secondary.claim() is False and not secondary.is_primary

    assert secondary.send({"action": "quick-ask"})
    await wait_until(lambda: received == [{"action": "quick-ask"}], message=f"got {received}")
    assert secondary.send({"action": "show", "text": "snow ☃ and\nnewlines"})
    await wait_until(lambda: len(received) == 2)
    assert received[1] == {"action": "show", "text": "snow ☃ and\nnewlines"}

    # once the primary closes, the next launch becomes primary
    primary.close()
    assert secondary.claim() and secondary.is_primary


async def test_messages_split_across_writes_or_sharing_one(key: str, instances: list[SingleInstance]) -> None:
    primary = SingleInstance(key)
    instances.append(primary)
    assert primary.claim()
    received: list[dict[str, object]] = []
    primary.messageReceived.connect(received.append)

    socket = raw_write(key, b'{"action": "qui')
    await asyncio.sleep(0.1)  # the primary has read half a message by now
    assert received == []
    socket.write(b'ck-ask"}\n{"n": 1}\n{"n": ')
    socket.waitForBytesWritten(2000)
    await wait_until(lambda: len(received) == 2)
    socket.write(b"2}")  # the last message may omit its newline: hanging up ends it
    socket.waitForBytesWritten(2000)
    socket.disconnectFromServer()
    await wait_until(lambda: len(received) == 3)
    assert received == [{"action": "quick-ask"}, {"n": 1}, {"n": 2}]


async def test_malformed_input_is_ignored_and_the_primary_keeps_working(
    key: str, instances: list[SingleInstance], caplog: pytest.LogCaptureFixture
) -> None:
    primary = SingleInstance(key)
    sender = SingleInstance(key)
    instances += [primary, sender]
    assert primary.claim()
    received: list[dict[str, object]] = []
    primary.messageReceived.connect(received.append)

    with caplog.at_level(logging.WARNING, logger="ui.single_instance"):
        socket = raw_write(key, b"not json\n", b"[1, 2]\n", b"\xff\xfe\x00\n", b"\n", b'{"action": "show"}\n')
        await wait_until(lambda: received == [{"action": "show"}])
        socket.disconnectFromServer()
        # a client that floods without a newline is cut off
        flood = raw_write(key, b"x" * 70_000)
        await wait_until(lambda: flood.state() == QLocalSocket.LocalSocketState.UnconnectedState)
        flood.abort()
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("malformed" in w for w in warnings) == 2, warnings
    assert any("not an object" in w for w in warnings) and any("without a newline" in w for w in warnings)

    assert sender.send({"action": "quick-ask"})
    await wait_until(lambda: received == [{"action": "show"}, {"action": "quick-ask"}])


@pytest.mark.skipif(sys.platform.startswith("win"), reason="named pipes leave no socket file behind")
@pytest.mark.parametrize("script", [PRIMARY, BARE_SERVER], ids=["shoal-primary", "bare-server"])
async def test_a_primary_killed_with_sigkill_does_not_block_a_new_one(
    script: str, key: str, instances: list[SingleInstance]
) -> None:
    """kill -9 leaves the socket file (and, for a Shoal primary, its lock file) behind."""
    child = Child(script, key)
    try:
        await child.wait_for_line("READY")
        assert not SingleInstance(key).claim()  # alive: not ours to take
        child.process.send_signal(signal.SIGKILL)
        assert await child.wait_exit() == -signal.SIGKILL
    finally:
        child.close()
    primary = SingleInstance(key)
    instances.append(primary)
    name = server_name(key)
    assert Path(name if os.path.isabs(name) else os.path.join(QDir.tempPath(), name)).exists()
    assert primary.claim()
    received: list[dict[str, object]] = []
    primary.messageReceived.connect(received.append)
    assert SingleInstance(key).send({"action": "quick-ask"})
    await wait_until(lambda: received == [{"action": "quick-ask"}])
    assert not SingleInstance(key).claim()  # and the new primary is defended in turn


async def test_simultaneous_claims_have_one_winner(
    key: str, instances: list[SingleInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Launches racing each other all probe before anyone listens; Qt's listen() with UserAccessOption
    would then let each replace the last one's socket. The lock file decides."""
    monkeypatch.setattr(SingleInstance, "_primary_alive", lambda self: False)  # everyone probes too early
    contenders = [SingleInstance(key) for _ in range(5)]
    instances += contenders
    assert [c.claim() for c in contenders] == [True, False, False, False, False]
    assert sum(c.is_primary for c in contenders) == 1


async def test_forwarding_to_a_primary_in_another_process(key: str) -> None:
    child = Child(PRIMARY, key)
    try:
        await child.wait_for_line("READY")
        secondary = SingleInstance(key)
        assert not secondary.claim()
        assert secondary.send({"action": "quick-ask"})
        assert await child.wait_exit() == 0, child.stderr()
        assert 'MESSAGE {"action": "quick-ask"}' in child.lines
    finally:
        child.close()
    # the primary cleaned up after itself: the key is free again
    successor = SingleInstance(key)
    assert successor.claim()
    successor.close()


def test_the_default_key_separates_users_and_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_CONFIG", str(tmp_path / "a" / "config.toml"))
    first = default_key()
    assert first == default_key() and first.startswith("shoal-")
    monkeypatch.setenv("SHOAL_CONFIG", str(tmp_path / "b" / "config.toml"))
    assert default_key() != first
    monkeypatch.setenv("SHOAL_CONFIG", str(tmp_path / "a" / "config.toml"))
    monkeypatch.setattr("getpass.getuser", lambda: "someone-else")
    other_user = default_key()
    assert other_user != first and other_user.startswith("shoal-someone-else-")
    assert len(server_name(other_user).encode()) < 108  # fits a Unix socket address


def test_the_socket_lives_in_the_private_runtime_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform.startswith("win"):
        pytest.skip("named pipes")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert server_name("shoal-x") == str(tmp_path / "shoal-x")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert server_name("shoal-x") == "shoal-x"  # Qt puts it in the temp folder
    assert server_name("/run/explicit.sock") == "/run/explicit.sock"  # an absolute key is used as is


def test_two_configs_never_share_a_running_app(tmp_path: Path) -> None:
    from ui.single_instance import default_key

    assert default_key(tmp_path / "a.toml") != default_key(tmp_path / "b.toml")
    assert default_key(tmp_path / "a.toml") == default_key(tmp_path / "a.toml")
