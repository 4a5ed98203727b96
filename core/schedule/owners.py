"""Who is running a run, so a run left `running` by a process that died does not block its job forever.

Several processes share one database: the desktop app runs the schedule, `shoal schedule run` runs a job in
the terminal, a second core in the same process (tests, a restart). A job must never overlap itself across
all of them, so an active run row names its owner: host, process id and a token per `Scheduler`. A row is
stale (its owner is gone) when that process no longer exists, when it is this process but the scheduler that
claimed it was stopped, or, for another host sharing the folder, after `STALE_AFTER`.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

STALE_AFTER = timedelta(hours=12)
HOST = socket.gethostname()
_live: set[str] = set()  # owners of the schedulers alive in this process


def new_owner() -> str:
    owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    _live.add(owner)
    return owner


def release(owner: str) -> None:
    _live.discard(owner)


def is_stale(owner: str | None, claimed_at: datetime, now: datetime) -> bool:
    host, _, rest = (owner or "").partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != HOST or not pid_text.isdigit():
        return now - claimed_at > STALE_AFTER
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _live
    return not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True
