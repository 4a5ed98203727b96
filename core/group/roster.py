"""The live roster: who is in the group, what they can do, and the keys that verify what they say.

Built only from signed announcements (each one is a heartbeat). A card is accepted only if its agent id is
the one its own public key yields, so nobody can announce under another agent's id. Peers silent for three
of their heartbeat intervals drop out by themselves; nobody has to tell the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.group.envelope import ROSTER_ANNOUNCE, ROSTER_LEAVE, Envelope
from core.group.identity import PublicKey
from core.timeline.ids import seconds_since

log = logging.getLogger(__name__)
MISSED_HEARTBEATS = 3
KEY_GRACE = 3600.0  # seconds a departed agent's key is kept for its late envelopes


@dataclass
class Member:
    agentid: str
    name: str
    key: PublicKey
    description: str = ""
    skills: list[dict[str, str]] = field(default_factory=list)
    model: str = ""
    zone: str = "public"
    capabilities: list[str] = field(default_factory=list)
    version: str = ""
    heartbeat_ms: int = 5000
    started_at: str = ""
    status: str = "idle"
    active_tasks: int = 0
    parent: str = ""  # the parent its card names: an agent id, or configured text (core/group/hierarchy.py)
    role: str = "member"  # member | orchestrator
    tasks: list[dict[str, Any]] = field(default_factory=list)  # what it works on (card field `tasks`, §4)
    last_seen: float = 0.0  # time.monotonic() of the latest announcement
    last_announce: str = ""  # its envelope time

    @property
    def skill_names(self) -> list[str]:
        return [s.get("name", "") for s in self.skills]

    def expired(self, now: float) -> bool:
        return now - self.last_seen > MISSED_HEARTBEATS * self.heartbeat_ms / 1000

    def card(self) -> dict[str, Any]:
        """For display (CLI, desktop): everything but the key object."""
        return {
            "agentid": self.agentid,
            "name": self.name,
            "description": self.description,
            "skills": self.skills,
            "model": self.model,
            "zone": self.zone,
            "capabilities": self.capabilities,
            "version": self.version,
            "heartbeatms": self.heartbeat_ms,
            "startedat": self.started_at,
            "status": self.status,
            "activetasks": self.active_tasks,
            "tasks": self.tasks,
            "parent": self.parent,
            "role": self.role,
            "lastseen": self.last_announce,
        }


RosterListener = Callable[[str, Member], None]  # ("joined" | "updated" | "left" | "expired", member)


class Roster:
    def __init__(self, own_id: str = "") -> None:
        self.own_id = own_id
        self._members: dict[str, Member] = {}
        self._keys: dict[str, PublicKey] = {}  # verified keys outlive a member's departure (late envelopes)
        self._departed: dict[str, float] = {}  # agent id -> when it left (monotonic): its key goes KEY_GRACE later
        self._waiters: dict[str, list[asyncio.Future[PublicKey]]] = {}
        self._listeners: list[RosterListener] = []
        self.pinned_name: Callable[[str], str | None] | None = None  # core/group/membership.py

    # --- reading -----------------------------------------------------------------------------

    def members(self, *, include_self: bool = True) -> list[Member]:
        out = [m for m in self._members.values() if include_self or m.agentid != self.own_id]
        return sorted(out, key=lambda m: (m.name.lower(), m.agentid))

    def get(self, agentid: str) -> Member | None:
        return self._members.get(agentid)

    def find(self, name_or_id: str) -> Member | None:
        """By agent id, id prefix (6+ characters) or name."""
        if name_or_id in self._members:
            return self._members[name_or_id]
        for member in self._members.values():
            if member.name == name_or_id or (len(name_or_id) >= 6 and member.agentid.startswith(name_or_id)):
                return member
        return None

    def with_skill(self, skill: str) -> list[Member]:
        return [m for m in self.members() if skill in m.skill_names]

    @staticmethod
    def is_roster_type(event_type: str) -> bool:
        return event_type in (ROSTER_ANNOUNCE, ROSTER_LEAVE)

    def key_for(self, agentid: str) -> PublicKey | None:
        return self._keys.get(agentid)

    async def wait_for_key(self, agentid: str, timeout: float) -> PublicKey | None:
        """The key of an agent whose announcement may still be on its way on the announce topic."""
        if key := self._keys.get(agentid):
            return key
        future: asyncio.Future[PublicKey] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(agentid, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(agentid, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:  # senders that never turn up must not leave an entry each
                self._waiters.pop(agentid, None)

    def add_listener(self, listener: RosterListener) -> None:
        self._listeners.append(listener)

    # --- updating ----------------------------------------------------------------------------

    def apply(self, envelope: Envelope, *, replayed: bool = False) -> tuple[str, Member] | None:
        """Take a roster envelope into account. Returns what changed, or None when it was rejected.
        Raises ValueError for a card that fails verification (the caller drops and audits it).

        A `replayed` card (read while catching up on the topic's history) counts as heard when it was
        sent, not now, so a member that crashed long ago is not listed as live until it times out again.
        Live cards count as heard now: a peer's clock that runs behind must not make it look dead."""
        if envelope.type == ROSTER_LEAVE:
            return self._leave(envelope)
        if envelope.type != ROSTER_ANNOUNCE:
            return None
        data = envelope.data
        key = self._verified_key(envelope, data)
        member = self._members.get(envelope.agentid)
        change = "updated" if member else "joined"
        if member is None:
            member = Member(agentid=envelope.agentid, name="", key=key)
            self._members[envelope.agentid] = member
        _fill(member, data)
        pinned = self.pinned_name(envelope.agentid) if self.pinned_name is not None else None
        if pinned:  # a closed group knows each member by the name it was admitted with, not what its card says
            member.name = pinned
        member.last_seen = time.monotonic() - (max(0.0, seconds_since(envelope.time) or 0.0) if replayed else 0.0)
        member.last_announce = envelope.time
        self._key_known(envelope.agentid, key)
        self._emit(change, member)
        return change, member

    def _verified_key(self, envelope: Envelope, data: dict[str, Any]) -> PublicKey:
        known = self._keys.get(envelope.agentid)
        if known is not None and data.get("publickey") == _b64(known):
            key = known
        else:
            try:
                key = PublicKey(str(data.get("publickey", "")))
            except ValueError as exc:
                raise ValueError(f"announcement without a valid public key: {exc}") from None
        if key.agent_id != envelope.agentid:
            raise ValueError("announced agent id does not match its public key")
        if not envelope.verify(key):
            raise ValueError("announcement signature does not verify")
        return key

    def _leave(self, envelope: Envelope) -> tuple[str, Member] | None:
        member = self._members.get(envelope.agentid)
        if member is None:
            return None
        if not envelope.verify(member.key):
            raise ValueError("leave signature does not verify")
        del self._members[envelope.agentid]
        self._departed[envelope.agentid] = time.monotonic()
        self._emit("left", member)
        return "left", member

    def expire(self, now: float | None = None) -> list[Member]:
        """Drop members silent for three heartbeats (never this agent itself), and the keys of agents gone for
        longer than KEY_GRACE (each command-line session is a new agent: kept, they would pile up for good)."""
        now = time.monotonic() if now is None else now
        gone = [m for m in self._members.values() if m.agentid != self.own_id and m.expired(now)]
        for member in gone:
            del self._members[member.agentid]
            self._departed[member.agentid] = now
            self._emit("expired", member)
        for agentid, left in list(self._departed.items()):
            if now - left > KEY_GRACE:
                del self._departed[agentid]
                if agentid not in self._members:
                    self._keys.pop(agentid, None)
        return gone

    def drop(self, agentid: str) -> None:
        """Remove a member at once (revoked from a closed group); its key stays a while for late envelopes."""
        member = self._members.pop(agentid, None)
        if member is not None:
            self._departed[agentid] = time.monotonic()
            self._emit("left", member)

    def check_card(self, envelope: Envelope) -> None:
        """Raise ValueError unless a card is self-consistent and signed (without taking it into account)."""
        if envelope.type == ROSTER_ANNOUNCE:
            self._verified_key(envelope, envelope.data)

    def clear(self) -> None:
        self._members.clear()

    def _key_known(self, agentid: str, key: PublicKey) -> None:
        self._keys[agentid] = key
        self._departed.pop(agentid, None)  # back (or new): its key stays
        for future in self._waiters.pop(agentid, []):
            if not future.done():
                future.set_result(key)

    def _emit(self, change: str, member: Member) -> None:
        for listener in list(self._listeners):
            try:
                listener(change, member)
            except Exception:
                log.exception("roster listener failed")


def _b64(key: PublicKey) -> str:
    import base64

    return base64.b64encode(key.raw).decode("ascii")


def _fill(member: Member, data: dict[str, Any]) -> None:
    member.name = str(data.get("name") or member.agentid[:8])[:100]
    member.description = str(data.get("description") or "")[:1000]
    skills = data.get("skills")
    member.skills = [
        {"name": str(s.get("name", "")), "description": str(s.get("description", ""))}
        for s in (skills if isinstance(skills, list) else [])
        if isinstance(s, dict) and s.get("name")
    ]
    member.model = str(data.get("model") or "")
    member.zone = str(data.get("zone") or "public")
    caps = data.get("capabilities")
    member.capabilities = [str(c) for c in caps] if isinstance(caps, list) else []
    member.version = str(data.get("version") or "")
    beat = data.get("heartbeatms")
    member.heartbeat_ms = beat if isinstance(beat, int) and 100 <= beat <= 3_600_000 else 5000
    member.started_at = str(data.get("startedat") or "")
    member.status = str(data.get("status") or "idle")
    active = data.get("activetasks")
    member.active_tasks = active if isinstance(active, int) else 0
    member.tasks = card_tasks(data.get("tasks"))
    member.parent = str(data.get("parent") or "")[:100]
    member.role = "orchestrator" if data.get("role") == "orchestrator" else "member"  # unknown roles: members


# A card's task numbers beyond these are dropped (a number too big for a float breaks every view of it).
CARD_NUMBER_LIMITS = {"step": 10**6, "steps": 10**6, "elapsedms": 2**53}


def card_tasks(value: Any) -> list[dict[str, Any]]:
    """A card's optional `tasks` (protocol §4), each entry reduced to the documented fields of the right type
    and range (CARD_NUMBER_LIMITS): a peer's odd card must not break the dashboard or `shoal get tasks`."""
    out: list[dict[str, Any]] = []
    for entry in value[:20] if isinstance(value, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("taskid"), str) or not entry["taskid"]:
            continue
        found = entry.get("requester")
        requester: dict[str, Any] = found if isinstance(found, dict) else {}
        task: dict[str, Any] = {
            "taskid": entry["taskid"][:128],
            "skill": str(entry.get("skill") or "")[:64],
            "requester": {
                "agentid": str(requester.get("agentid") or "")[:64],
                "name": str(requester.get("name") or "")[:100],
            },
            "startedat": str(entry.get("startedat") or "")[:40],
            "message": str(entry.get("message") or "")[:200],
        }
        for name, most in CARD_NUMBER_LIMITS.items():
            number = entry.get(name)
            if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= most:
                task[name] = number
        out.append(task)
    return out
