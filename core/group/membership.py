"""Who belongs to a closed group: admissions and revocations read from the control topic (docs/groups.md).

Every member reads the control topic from its beginning on each start and applies each `shoal.control.admit`
and `shoal.control.revoke` in order, checking each itself: an admission counts only if it carries a valid
proof of the join secret bound to the newcomer's name and keys, and is signed by an agent already admitted
(the founder named in the invite admits itself first). No member has to trust another's word, and the single
partition gives every member the same order, so all reach the same verdict.

An agent that holds no join secret for its group runs the group open (protocol 1.0): everyone who announces
takes part. With a secret, envelopes from agents that were never admitted, or were revoked, are dropped and
audited (`not-admitted`, `revoked`), and their roster cards are held back until they are admitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.group.envelope import ROSTER_LEAVE, Envelope, EnvelopeRejected
from core.group.identity import PublicKey
from core.group.invite import Invite
from core.timeline.ids import parse_iso

log = logging.getLogger(__name__)

CONTROL_JOIN = "shoal.control.join"
CONTROL_CHALLENGE = "shoal.control.challenge"
CONTROL_PROOF = "shoal.control.proof"
CONTROL_ADMIT = "shoal.control.admit"
CONTROL_DENY = "shoal.control.deny"
CONTROL_REVOKE = "shoal.control.revoke"
CONTROL_ZONE = "shoal.control.zone"  # core/group/zones.py
CONTROL_TYPES = (
    CONTROL_JOIN,
    CONTROL_CHALLENGE,
    CONTROL_PROOF,
    CONTROL_ADMIT,
    CONTROL_DENY,
    CONTROL_REVOKE,
    CONTROL_ZONE,
)
ROLES = ("founder", "member", "ephemeral")
MAX_HELD_CARDS = 1000
MAX_EPHEMERAL_HOURS = 2  # sessions are admitted for one hour; a little room for clock skew
SESSION_FORGET = timedelta(hours=1)  # an expired session's admission is dropped this long after its expiry
MembershipListener = Callable[[str, str], None]  # ("admitted" | "revoked" | "pending", agentid)


@dataclass
class Admission:
    agentid: str
    name: str
    key: PublicKey
    boxkey: str
    role: str
    admitted_by: str
    admitted_at: str
    expires_at: str
    envelope_id: str
    _expires: datetime | None = field(default=None, init=False, repr=False, compare=False)

    def live(self, now: datetime | None = None) -> bool:
        if not self.expires_at:
            return True
        if self._expires is None:  # asked for each envelope a session sends: parse once
            self._expires = parse_time(self.expires_at)
        return self._expires > (now or datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        return {
            "agentid": self.agentid,
            "name": self.name,
            "role": self.role,
            "admittedby": self.admitted_by,
            "admittedat": self.admitted_at,
            "expiresat": self.expires_at,
            "boxkey": self.boxkey,
        }


def proof_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The fields a join proof binds (invite.PROOF_FIELDS) as an admit or proof carries them."""
    return {k: data.get(k, "") for k in ("agentid", "name", "publickey", "boxkey", "challenge", "joinid")}


class Membership:
    def __init__(self, invite: Invite | None, own_id: str = "", *, enforce: bool = True) -> None:
        self.invite = invite
        self.own_id = own_id
        self.enforced = invite is not None and enforce
        self.admitted: dict[str, Admission] = {}
        self.revoked: dict[str, dict[str, str]] = {}
        self._held_cards: dict[str, tuple[Envelope, bool]] = {}
        self._applied: set[str] = set()  # control envelope ids already applied
        self._waiters: dict[str, list[asyncio.Future[bool]]] = {}
        self._listeners: list[MembershipListener] = []
        self.on_admitted: Callable[[Envelope, bool], object] | None = None  # re-applies a held roster card

    def first_sight(self, envelope_id: str) -> bool:
        """True the first time a control envelope id is applied (admissions, revocations, zones)."""
        if envelope_id in self._applied:
            return False
        self._applied.add(envelope_id)
        return True

    @property
    def founder(self) -> str:
        return self.invite.founder if self.invite else ""

    # --- reading -----------------------------------------------------------------------------------------

    def status(self, agentid: str) -> str:
        """open | admitted | revoked | expired | pending (a card held back) | unknown."""
        if not self.enforced:
            return "open"
        if agentid in self.revoked:
            return "revoked"
        admission = self.admitted.get(agentid)
        if admission is not None:
            return "admitted" if admission.live() else "expired"
        return "pending" if agentid in self._held_cards else "unknown"

    def allows(self, agentid: str) -> bool:
        """May envelopes from this agent be processed? Always in an open group; this agent always."""
        return not self.enforced or agentid == self.own_id or self.status(agentid) == "admitted"

    def is_admin(self, agentid: str) -> bool:
        """The founder revokes (docs/groups.md): the one role every member can check from the invite alone."""
        return bool(self.founder) and agentid == self.founder and self.status(agentid) == "admitted"

    def key_for(self, agentid: str) -> PublicKey | None:
        admission = self.admitted.get(agentid)
        return admission.key if admission else None

    def held_key(self, agentid: str) -> PublicKey | None:
        """The key in a held-back card (checked when it was held): a newcomer whose secret cannot check any
        admission still has to hear a member's challenge or refusal."""
        held = self._held_cards.get(agentid)
        if held is None:
            return None
        try:
            return PublicKey(str(held[0].data.get("publickey", "")))
        except ValueError:
            return None

    def held(self) -> list[tuple[str, str]]:
        """(agentid, name) of agents whose cards are held back: asked to join, or never admitted."""
        return [(a, str(env.data.get("name", ""))) for a, (env, _r) in self._held_cards.items()]

    def rows(self) -> list[dict[str, Any]]:
        out = [{**a.row(), "status": self.status(a.agentid)} for a in self.admitted.values()]
        out += [{"agentid": a, "status": "revoked", **info} for a, info in self.revoked.items()]
        return sorted(out, key=lambda r: (r.get("name", ""), r["agentid"]))

    def add_listener(self, listener: MembershipListener) -> None:
        self._listeners.append(listener)

    async def wait_admitted(self, agentid: str, timeout: float) -> bool:
        """For an envelope whose sender's admission may still be on its way on the control topic (and for
        this agent's own admission, which `allows` takes for granted)."""
        if not self.enforced or self.status(agentid) == "admitted":
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(agentid, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(agentid, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:  # senders that never turn up must not leave an entry each
                self._waiters.pop(agentid, None)

    # --- roster cards ------------------------------------------------------------------------------------

    def hold_card(self, envelope: Envelope, replayed: bool) -> bool:
        """True when the card must wait for its sender's admission (then it is kept, newest per agent). A leave
        waits for nothing, nor does an old session's last card read again from the (compacted) announce topic:
        neither is anyone asking to join."""
        if self.allows(envelope.agentid):
            return False
        if envelope.type == ROSTER_LEAVE or (replayed and "ephemeral" in (envelope.data.get("capabilities") or ())):
            return True
        if envelope.agentid not in self.revoked and (
            envelope.agentid in self._held_cards or len(self._held_cards) < MAX_HELD_CARDS
        ):
            first = envelope.agentid not in self._held_cards
            self._held_cards[envelope.agentid] = (envelope, replayed)
            if first:  # a newcomer waiting (the desktop lists join requests); not each of its heartbeats
                self._tell("pending", envelope.agentid)
        return True

    # --- applying control envelopes ------------------------------------------------------------------------

    def signer_key(self, envelope: Envelope) -> PublicKey | None:
        """The key an admit or revoke must verify with: its signer's admission (the founder's genesis admit
        carries its own key, and the founder's id is derived from it)."""
        key = self.key_for(envelope.agentid)
        if key is not None:
            return key
        data = envelope.data
        if envelope.type == CONTROL_ADMIT and envelope.agentid == self.founder == data.get("agentid"):
            try:
                return PublicKey(str(data.get("publickey", "")))
            except ValueError:
                return None
        return None

    def apply(self, envelope: Envelope) -> EnvelopeRejected | None:
        """Take a verified admit or revoke into account; a rejection (dropped and audited) if it is not valid.
        Each envelope counts once: the same record produced again (a replay) changes nothing."""
        if not self.enforced or self.invite is None or not self.first_sight(envelope.id):
            return None
        if envelope.type == CONTROL_ADMIT:
            return self._admit(envelope)
        if envelope.type == CONTROL_REVOKE:
            return self._revoke(envelope)
        return None

    def _admit(self, envelope: Envelope) -> EnvelopeRejected | None:
        assert self.invite is not None
        data = envelope.data
        agentid = str(data.get("agentid", ""))
        try:
            key = PublicKey(str(data.get("publickey", "")))
        except ValueError:
            return _refused("bad-admission", "the admitted public key is not an Ed25519 key", envelope)
        if key.agent_id != agentid:
            return _refused("bad-admission", "the admitted agent id does not match its public key", envelope)
        genesis = envelope.agentid == agentid == self.founder
        if agentid == self.founder and not genesis:
            return _refused("bad-admission", "only the founder's own record admits the founder", envelope)
        if not genesis and self.status(envelope.agentid) != "admitted":
            return _refused("not-admitted", f"admitted by {envelope.agentid}, who is not a member", envelope)
        signer = self.admitted.get(envelope.agentid)
        if signer is not None and signer.role == "ephemeral":
            return _refused("not-admitted", "a short-lived session cannot admit others", envelope)
        if not self.invite.check(proof_fields(data), data.get("proof")):
            return _refused("wrong-secret", "the admission's proof does not match the group's join secret", envelope)
        if agentid in self.revoked:
            return _refused("revoked", f"{agentid} was removed from the group", envelope)
        role = "founder" if genesis else str(data.get("role") or "member")
        if role not in ROLES or (role == "founder" and not genesis):
            return _refused("bad-admission", f"unknown role {role!r}", envelope)
        expires = str(data.get("expiresat") or "")
        if role == "ephemeral" and not _short_lived(envelope.time, expires):
            return _refused("bad-admission", "a session admission needs an expiry within two hours", envelope)
        known = self.admitted.get(agentid)
        name = str(data.get("name", ""))[:100]
        if known is not None:  # an admission is never rewritten (keys, role, expiry): a repeat changes nothing
            if known.name != name and known.role != "ephemeral":
                return _refused("name-mismatch", f"{agentid} is a member as {known.name!r}", envelope)
            return None
        if role != "ephemeral" and (holder := self.holder_of(name)) is not None:
            return _refused("name-taken", f"{name!r} is the name of member {holder}", envelope)
        if role == "ephemeral":
            self.forget_sessions()
        self.admitted[agentid] = Admission(
            agentid,
            name,
            key,
            str(data.get("boxkey", "")),
            role,
            envelope.agentid,
            envelope.time,
            expires,
            envelope.id,
        )
        self._emit("admitted", agentid)
        return None

    def _revoke(self, envelope: Envelope) -> EnvelopeRejected | None:
        target = str(envelope.data.get("agentid", ""))
        if not self.is_admin(envelope.agentid):
            return _refused("not-admin", f"{envelope.agentid} may not remove members", envelope)
        if target == self.founder:
            return _refused("not-admin", "the founder cannot be removed", envelope)
        self.revoked[target] = {
            "by": envelope.agentid,
            "at": envelope.time,
            "reason": str(envelope.data.get("reason", ""))[:300],
            "name": self.admitted[target].name if target in self.admitted else "",
        }
        self.admitted.pop(target, None)
        self._held_cards.pop(target, None)
        self._emit("revoked", target)
        sessions = [a for a, adm in self.admitted.items() if adm.role == "ephemeral" and adm.admitted_by == target]
        for session in sessions:  # its command sessions go with it
            self.revoked[session] = {**self.revoked[target], "reason": f"session of removed {target}"}
            del self.admitted[session]
            self._emit("revoked", session)
        return None

    def forget_sessions(self, now: datetime | None = None) -> list[str]:
        """Drops the admissions of sessions expired for longer than SESSION_FORGET (a command-line session is
        a new agent each time: kept, they would pile up for good, and be walked for every sealed envelope).
        A dropped session is `unknown` from then on, so what it might still send is refused all the same."""
        cutoff = (now or datetime.now(UTC)) - SESSION_FORGET
        stale = [a for a, adm in self.admitted.items() if adm.role == "ephemeral" and not adm.live(cutoff)]
        for agentid in stale:
            admission = self.admitted.pop(agentid)
            self._applied.discard(admission.envelope_id)
            self._held_cards.pop(agentid, None)
        return stale

    def holder_of(self, name: str) -> str | None:
        """The member (not a session) admitted under `name`: one name, one key in a closed group."""
        return next((a for a, adm in self.admitted.items() if adm.name == name and adm.role != "ephemeral"), None)

    def pinned_name(self, agentid: str) -> str | None:
        """The name an admitted member is known by, whatever its card says (a card is self-signed)."""
        admission = self.admitted.get(agentid) if self.enforced else None
        return admission.name if admission is not None and admission.role != "ephemeral" else None

    def _emit(self, change: str, agentid: str) -> None:
        if change == "admitted":
            for future in self._waiters.pop(agentid, []):
                if not future.done():
                    future.set_result(True)
            held = self._held_cards.pop(agentid, None)
            if held is not None and self.on_admitted is not None:
                self.on_admitted(*held)
        self._tell(change, agentid)

    def _tell(self, change: str, agentid: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(change, agentid)
            except Exception:
                log.exception("membership listener failed")


def _refused(reason: str, detail: str, envelope: Envelope) -> EnvelopeRejected:
    return EnvelopeRejected(reason, detail, envelope.summary("control"))


def parse_time(text: str) -> datetime:
    """`text` as a time, the beginning of the calendar when unreadable (so it is never the newer one)."""
    return parse_iso(text) or datetime.min.replace(tzinfo=UTC)


def _short_lived(sent: str, expires: str) -> bool:
    if not expires:
        return False
    span = (parse_time(expires) - parse_time(sent)).total_seconds()
    return 0 < span <= MAX_EPHEMERAL_HOURS * 3600
