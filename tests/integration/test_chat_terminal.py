"""`shoal chat` in a real pseudo-terminal: Ctrl+C stops an answer, Ctrl+C at the prompt leaves."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

from tests.integration.conftest import PLAIN_REPLY

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """`shoal ARGS` on a pty, as a person at a keyboard would run it."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become shoal
            os.chdir(ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "app", *args])
        self.screen = ""

    def read(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    return

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while self.screen.count(text) < count:
            assert time.monotonic() < end, f"never saw {text!r} x{count}; screen:\n{self.screen[-2000:]}"
            self.read(0.1)

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def exit_code(self, timeout: float) -> int | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.read(0.05)
        return None

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(endless_model: Path) -> None:
    term = Terminal("--model", str(endless_model), "--max-tokens", "3000", "chat")
    try:
        term.wait_for("you›")
        term.type("tell me everything\r")
        term.wait_for("shoal›")
        term.read(0.5)
        term.type("\x03")  # Ctrl+C while the answer streams
        term.wait_for("stopped", timeout=10)
        term.wait_for("you›", count=2, timeout=10)
        term.type("/id\r")
        term.read(0.5)
        term.type("\x04")  # Ctrl+D leaves
        assert term.exit_code(10) == 0
    finally:
        term.kill()


def test_ctrl_c_at_the_prompt_leaves_at_once(plain_model: Path) -> None:
    term = Terminal("--model", str(plain_model), "chat")
    try:
        term.wait_for("you›")
        term.type("hello\r")
        term.wait_for(PLAIN_REPLY)
        term.wait_for("you›", count=2)
        term.type("\x03")
        assert term.exit_code(3) == 0
    finally:
        term.kill()
