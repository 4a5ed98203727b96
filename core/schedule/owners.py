"""Who is running a run, so a run left `running` by a process that died does not block its job forever.

Several processes share one database: the desktop app runs the schedule, `shoal schedule run` runs a job in
the terminal, a second core in the same process (tests, a restart). A job must never overlap itself across
all of them, so an active run row names its owner: `host:pid:token:start`, the token one per `Scheduler` and
`start` the process's start time (see `process_start`), because a process id alone is reused: after a crash
and a reboot another program can hold the dead owner's pid, and the run would look alive forever.

A row is stale (its owner is gone) when:
- its owner is a scheduler of this process that was stopped, or that no longer has the run in flight (its end
  failed to write: the row must not block the job until a restart);
- its process no longer exists, or a process with that pid exists but started at another time;
- the owner's start time cannot be compared (another host sharing the folder, a system without /proc, a row
  written before start times were recorded) and the run is older than `STALE_AFTER`.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

STALE_AFTER = timedelta(hours=12)
HOST = socket.gethostname()
# The schedulers alive in this process, each with the ids of the runs it has queued or running. Run ids are
# added on the database thread in the transaction that inserts the row (so no other claim can see the row
# before it is held) and dropped on the event loop when the run's task ends; set operations are atomic.
_live: dict[str, set[str]] = {}


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """When process `pid` started, as a mark that differs for a reused pid: the boot id and the start time in
    clock ticks since boot (field 22 of /proc/<pid>/stat). None where there is no /proc (macOS, Windows: psutil
    is not a dependency) or the process does not exist; callers then fall back to `STALE_AFTER`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may contain spaces
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return f"{_boot_id()}.{fields[19]}"


@cache
def _own_start(pid: int) -> str:
    """This process's mark (keyed by pid, so a forked child has its own)."""
    return process_start(pid) or ""


def new_owner() -> str:
    pid = os.getpid()
    owner = f"{HOST}:{pid}:{uuid.uuid4().hex[:12]}:{_own_start(pid)}"
    revive(owner)
    return owner


def revive(owner: str) -> None:
    """The scheduler owning `owner` is (again) alive; the runs it holds are kept."""
    _live.setdefault(owner, set())


def release(owner: str) -> None:
    """The scheduler is stopped: every run it still owns is stale from now on, for every process."""
    _live.pop(owner, None)


def hold(owner: str, run_id: str) -> None:
    """`owner` has `run_id` in flight (called where the run's row is inserted)."""
    held = _live.get(owner)
    if held is not None:
        held.add(run_id)


def held(owner: str) -> set[str]:
    """The run ids `owner` holds now (a copy)."""
    return set(_live.get(owner, ()))


def drop(owner: str, run_id: str) -> None:
    """The run's task ended: if its row is still active, nobody is running it any more."""
    held = _live.get(owner)
    if held is not None:
        held.discard(run_id)


def is_stale(owner: str | None, claimed_at: datetime, now: datetime, run_id: str | None = None) -> bool:
    parts = (owner or "").split(":")
    host, pid_text = parts[0], parts[1] if len(parts) > 1 else ""
    start = parts[3] if len(parts) > 3 else ""
    aged = now - claimed_at > STALE_AFTER
    if host != HOST or not pid_text.isdigit():
        return aged
    pid = int(pid_text)
    if pid == os.getpid() and start == _own_start(pid):
        held = _live.get(owner or "")
        return held is None or (run_id is not None and run_id not in held)
    if not pid_alive(pid):
        return True
    current = process_start(pid)
    if start and current:
        return start != current  # the pid was reused by a process that started later
    return aged  # alive, but it cannot be told from a reused pid: trusted for STALE_AFTER


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
