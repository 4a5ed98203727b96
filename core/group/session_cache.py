"""A command-line session kept for reuse while its admission lasts (docs/groups.md, "Command-line sessions").

In a closed group each command that sends (`shoal dispatch`, `shoal memory share`, …) runs as a short-lived
member admitted for an hour by this machine's membership. Admitting a new one for every command wrote a
control record each time, and every member reads the whole control topic again at every start (it keeps
everything): a job running a command every minute added 1,440 records a day. So the first command keeps its
session identity and zone key in the OS keyring (never in a file), with its admission's expiry, and the
commands after it reuse them while at least `MIN_LEFT` of the hour is left: one admission an hour per machine.

One command at a time uses the kept session: it holds a lock file in the data folder while it runs, and a
command started meanwhile gets a session of its own (two processes under one agent id would each take the
other's results, and the first to finish would take the shared id off every roster). A session is reused only
when its admission outlasts what the command needs (`needed`: a task's deadline) by `MIN_LEFT`. Anything
unusable (no keyring, a damaged entry, a session about to expire) means a new session, never an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from core.group.identity import Identity, scoped_account
from core.group.zonecrypt import BoxKey
from core.secrets import SERVICE
from core.timeline.ids import parse_iso

log = logging.getLogger(__name__)
MIN_LEFT = timedelta(minutes=15)  # a session with less admission left than this is not reused


@dataclass(frozen=True)
class StoredSession:
    identity: Identity
    box_key: BoxKey
    expires_at: str  # when its admission ends (RFC 3339)


def _account(group: str, scope: str) -> str:
    return scoped_account("group-session", group, scope)


class SessionLock:
    """The kept session's lock: a file in the data folder, locked (flock) while a command uses the session;
    the OS lets go of it when the process ends, however it ends."""

    def __init__(self, scope: str, group: str) -> None:
        self.path = Path(scope) / f"group-session-{group}.lock"
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """True when this command may use the kept session (no other command holds it)."""
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no locking, so no sharing either
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("ab")
        except OSError as exc:
            log.info("no command session lock (%s): a session of its own", exc)
            return False
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


def load(
    group: str, scope: str = "", now: datetime | None = None, needed: timedelta = timedelta(0)
) -> StoredSession | None:
    """The kept session of `group` (and data folder `scope`) if its admission has `needed` + `MIN_LEFT` to go."""
    import keyring

    try:
        stored = keyring.get_password(SERVICE, _account(group, scope))
        if not stored:
            return None
        data = json.loads(stored)
        session = StoredSession(
            Identity.from_private_b64(data["identity"]), BoxKey.from_private_b64(data["boxkey"]), data["expiresat"]
        )
    except Exception as exc:  # no keyring, or an entry this version cannot read: a new session it is
        log.info("no reusable command session for group %s: %s", group, exc)
        return None
    expires = parse_iso(session.expires_at)
    if expires is None or expires - (now or datetime.now(UTC)) < MIN_LEFT + needed:
        return None
    return session


def store(group: str, scope: str, identity: Identity, box_key: BoxKey, expires_at: str) -> None:
    """Keeps an admitted session for the next commands (best effort: without a keyring each command simply
    starts a session of its own, as before)."""
    import keyring

    entry = {"identity": identity.private_b64(), "boxkey": box_key.private_b64(), "expiresat": expires_at}
    try:
        keyring.set_password(SERVICE, _account(group, scope), json.dumps(entry))
    except Exception as exc:
        log.info("could not keep the command session of group %s for reuse: %s", group, exc)


def forget(group: str, scope: str = "") -> None:
    import keyring

    try:
        keyring.delete_password(SERVICE, _account(group, scope))
    except Exception:  # nothing kept, or no keyring: nothing to forget
        return


class SessionKeeper:
    """A command's use of the kept session: the lock, the session to reuse (if any), and keeping a new one."""

    def __init__(self, group: str, scope: str, needed: float = 0.0) -> None:
        self.group, self.scope, self.needed = group, scope, timedelta(seconds=max(0.0, needed))
        self.lock = SessionLock(scope, group)
        self.locked = False

    async def take(self) -> StoredSession | None:
        """Locks the kept session for this command and returns it when it can be reused; None: a new session
        (and, when this command holds the lock, it is kept for the next ones)."""
        self.locked = await asyncio.to_thread(self.lock.acquire)
        if not self.locked:
            return None  # another command is using it: a session of this command's own, not kept
        return await asyncio.to_thread(load, self.group, self.scope, None, self.needed)

    async def refused(self) -> None:
        """The group no longer admits the kept session: forget it."""
        await asyncio.to_thread(forget, self.group, self.scope)

    async def keep(self, identity: Identity, box_key: BoxKey, expires_at: str) -> None:
        if self.locked:
            await asyncio.to_thread(store, self.group, self.scope, identity, box_key, expires_at)

    def release(self) -> None:
        self.lock.release()
        self.locked = False
