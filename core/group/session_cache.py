"""A command-line session kept for reuse while its admission lasts (docs/groups.md, "Command-line sessions").

In a closed group each command that sends (`shoal dispatch`, `shoal memory share`, …) runs as a short-lived
member admitted for an hour by this machine's membership. Admitting a new one for every command wrote a
control record each time, and every member reads the whole control topic again at every start (it keeps
everything): a job running a command every minute added 1,440 records a day. So the first command keeps its
session identity and zone key in the OS keyring (never in a file), with its admission's expiry, and the
commands after it reuse them while at least `MIN_LEFT` of the hour is left: one admission an hour per machine.

Two commands at once share the session (one agent id): to the group they are one short-lived member.
Anything unusable (no keyring, a damaged entry, a session about to expire) means a new session, never an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


def load(group: str, scope: str = "", now: datetime | None = None) -> StoredSession | None:
    """The kept session of `group` (and data folder `scope`) if its admission has `MIN_LEFT` to go."""
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
    if expires is None or expires - (now or datetime.now(UTC)) < MIN_LEFT:
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
