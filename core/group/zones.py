"""Zones: who may see what inside a group (docs/groups.md, "Zones").

`public` is everyone who reads the group; `shared` is every admitted member (every agent, in an open group);
any other zone is private, defined by the founder on the control topic (`shoal.control.zone`) with the list
of members allowed in it. Every envelope carries its zone; an agent never processes a task or memory item from
a zone it is not in, and a private zone's payloads are sealed for its members' X25519 keys
(core/group/zonecrypt.py), so the broker and everyone else see only ciphertext.

Definitions are read from the control topic like admissions, in the same order by every member, and each
member checks the signer is the founder itself: a zone's member list cannot be widened by anyone else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.group.envelope import Envelope, EnvelopeRejected
from core.group.membership import CONTROL_ZONE, Membership

__all__ = ["CONTROL_ZONE", "Zone", "Zones"]
PUBLIC, SHARED = "public", "shared"
BUILTIN = (PUBLIC, SHARED)
ZONE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_ZONE_MEMBERS = 500
ZoneListener = Callable[[str], None]  # the zone defined, changed or removed
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Zone:
    name: str
    kind: str  # public | shared | private
    members: tuple[str, ...] = ()
    description: str = ""
    defined_by: str = ""
    defined_at: str = ""

    def row(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        names = names or {}
        return {
            "zone": self.name,
            "kind": self.kind,
            "members": [{"agentid": a, "name": names.get(a, "")} for a in self.members],
            "description": self.description,
            "definedby": self.defined_by,
            "definedat": self.defined_at,
        }


class Zones:
    def __init__(self, membership: Membership, own_zone: str = PUBLIC) -> None:
        self.membership = membership
        self.own_zone = own_zone  # the zone this agent's settings put its envelopes in
        self._private: dict[str, Zone] = {}
        self._removed: dict[str, Zone] = {}  # when each removed zone was removed (an older definition is stale)
        self._listeners: list[ZoneListener] = []

    def add_listener(self, listener: ZoneListener) -> None:
        """Told of each zone definition applied (the desktop's zones view redraws; nothing else polls)."""
        self._listeners.append(listener)

    def _tell(self, name: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(name)
            except Exception:
                log.exception("zone listener failed")

    def get(self, name: str) -> Zone | None:
        if name == PUBLIC:
            return Zone(PUBLIC, "public", description="everyone who reads the group")
        if name == SHARED:
            return Zone(SHARED, "shared", description="every admitted member")
        return self._private.get(name)

    def all(self) -> list[Zone]:
        builtin = [z for z in (self.get(PUBLIC), self.get(SHARED)) if z is not None]
        return builtin + sorted(self._private.values(), key=lambda z: z.name)

    def is_private(self, name: str) -> bool:
        return name in self._private

    def allows(self, agentid: str, name: str) -> bool:
        """May `agentid` see envelopes of zone `name`?"""
        if name == PUBLIC:
            return True
        if name == SHARED:
            return self.membership.allows(agentid)
        zone = self._private.get(name)
        if zone is None:  # a zone nobody defined: this agent is in it when its settings put it there (1.0 use)
            return agentid == self.membership.own_id and name == self.own_zone
        return self._listed(zone, agentid) and self.membership.allows(agentid)

    def _listed(self, zone: Zone, agentid: str) -> bool:
        """On the zone's list, or a command-line session of a member on it (admitted by that member)."""
        if agentid in zone.members:
            return True
        admission = self.membership.admitted.get(agentid)
        if admission is None or admission.role != "ephemeral" or admission.admitted_by not in zone.members:
            return False
        return self.membership.allows(admission.admitted_by)  # a removed member's sessions are out too

    def zones_of(self, agentid: str) -> list[str]:
        return [z.name for z in self.all() if self.allows(agentid, z.name)]

    def recipients(self, name: str) -> dict[str, str]:
        """agent id -> X25519 public key (base64) of the zone's members who have one."""
        zone = self._private.get(name)
        if zone is None:
            return {}
        out: dict[str, str] = {}
        for agentid, admission in self.membership.admitted.items():
            if admission.boxkey and self._listed(zone, agentid) and self.membership.allows(agentid):
                out[agentid] = admission.boxkey
        return out

    def apply(self, envelope: Envelope) -> EnvelopeRejected | None:
        """A verified `shoal.control.zone`: only the founder defines zones; an empty member list removes one."""
        if not self.membership.enforced or not self.membership.first_sight(envelope.id):
            return None  # a definition counts once, however often its record is produced again
        data = envelope.data
        name = str(data.get("zone", ""))
        if not self.membership.is_admin(envelope.agentid):
            return _refused("not-admin", f"{envelope.agentid} may not define zones", envelope)
        current = self._private.get(name) or self._removed.get(name)
        if current is not None and not _later(envelope.time, current.defined_at):
            return _refused("stale-zone", f"an older definition of zone {name!r} than the one in force", envelope)
        if name in BUILTIN or not ZONE_NAME.fullmatch(name):
            return _refused("malformed", f"{name!r} cannot be defined as a zone", envelope)
        members = data.get("members")
        if not isinstance(members, list) or len(members) > MAX_ZONE_MEMBERS:
            return _refused("malformed", "a zone's members must be a list of agent ids", envelope)
        if not members:
            self._private.pop(name, None)
            self._removed[name] = Zone(name, "removed", (), "", envelope.agentid, envelope.time)
            self._tell(name)
            return None
        ids = tuple(dict.fromkeys(str(m) for m in members))
        description = str(data.get("description", ""))[:300]
        self._private[name] = Zone(name, "private", ids, description, envelope.agentid, envelope.time)
        self._tell(name)
        return None


def _later(first: str, second: str) -> bool:
    """Is RFC 3339 time `first` after `second`? (A definition replaces another only when it is newer, so an old
    record produced again cannot bring back an older member list.)"""
    from core.group.membership import parse_time

    return parse_time(first) > parse_time(second)


def _refused(reason: str, detail: str, envelope: Envelope) -> EnvelopeRejected:
    return EnvelopeRejected(reason, detail, envelope.summary("control"))
