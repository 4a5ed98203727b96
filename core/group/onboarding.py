"""Joining a closed group: the join / challenge / proof / admit handshake, and revoking (docs/groups.md).

1. The newcomer sends `shoal.control.join` with its name and keys, signed with the key inside it.
2. One admitted member (an orchestrator if one is live, else the live member with the lowest agent id, so
   one answers) sends a one-time `challenge`, addressed to the newcomer.
3. The newcomer answers with a `proof`: an HMAC of the join secret over its name, keys and the challenge.
4. The member checks the proof, asks a person first when `group.join_approval` is `manual`, and publishes
   `shoal.control.admit` carrying the proof, so every member can check the admission itself.

A challenge is good once and for 60 seconds, and a join request only while it is fresh: a copied exchange
replayed later proves nothing. Each refusal is recorded in the timeline and the audit trail
(`group.membership`), and the newcomer is told why with a `deny`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import NetworkError, UserError
from core.group import audit
from core.group.envelope import Envelope
from core.group.hierarchy import is_orchestrator
from core.group.identity import PublicKey, b64url
from core.group.intake import Incoming
from core.group.membership import (
    CONTROL_ADMIT,
    CONTROL_CHALLENGE,
    CONTROL_DENY,
    CONTROL_JOIN,
    CONTROL_PROOF,
    CONTROL_REVOKE,
    Admission,
    proof_fields,
)
from core.group.onboarding_admin import AdminActions
from core.group.publisher import _writer
from core.timeline.ids import TraceContext, iso_utc, new_id, seconds_since
from core.timeline.store import Event

if TYPE_CHECKING:
    from core.group.node import GroupNode

log = logging.getLogger(__name__)
CHALLENGE_SECONDS = 60.0
JOIN_FRESH_SECONDS = 120.0
JOIN_RESEND_SECONDS = 10.0
APPROVAL_SECONDS = 600.0  # how long a manual approval may wait for a person
MAX_OPEN_CHALLENGES = 64  # a flood of join requests cannot make a member publish without end
Approver = Callable[[dict[str, Any]], Awaitable[bool]]
DENY_HINTS = {
    "wrong-secret": "The join secret is wrong: ask the group's founder for a fresh invite (shoal group create).",
    "revoked": "This agent was removed from the group; an admin cannot re-admit the same key.",
    "name-mismatch": "This agent joined under another name before: keep that name (group.agent_name).",
    "name-taken": "Another member has that name: pick another one (shoal group join CODE --name NAME).",
    "declined": "An admin declined the request.",
    "approval-unavailable": "Manual approval is on but no admin is at a desktop to approve; try again later.",
    "join-replayed": "The challenge was used or expired: run the join again.",
}


@dataclass
class _Challenge:
    joinid: str
    newcomer: str
    join: dict[str, Any]
    challenge: str
    expires: float
    used: bool = False


@dataclass
class _Attempt:
    joinid: str
    done: asyncio.Future[Admission] = field(repr=False)
    unchecked: str = ""  # the reason of a refusal from an agent this one could not check as a member


class Onboarding(AdminActions):
    def __init__(self, node: GroupNode) -> None:
        self.node = node
        self.approver: Approver | None = None
        self._challenges: dict[str, _Challenge] = {}  # challenge envelope id -> what it asked
        self._newcomer_keys: dict[str, PublicKey] = {}  # keys of agents this member challenged
        self._attempt: _Attempt | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        node.on(CONTROL_JOIN, self._on_join, duplicate=self._on_repeat)
        node.on(CONTROL_PROOF, self._on_proof, duplicate=self._on_repeat)
        node.on(CONTROL_CHALLENGE, self._on_challenge)
        node.on(CONTROL_DENY, self._on_deny)
        node.on(CONTROL_ADMIT, self._on_admit)
        node.on(CONTROL_REVOKE, self._on_revoke)

    def key_for(self, agentid: str) -> PublicKey | None:
        return self._newcomer_keys.get(agentid)

    # --- the newcomer ------------------------------------------------------------------------------------

    async def join(self, timeout: float) -> Admission:
        """Ask to be admitted and wait for the answer. Returns at once if this agent is a member already."""
        membership = self.node.membership
        if membership.invite is None:
            raise UserError("This agent holds no invite for the group.", "Run: shoal group join <invite code>")
        own = membership.admitted.get(self.node.agent_id)
        if own is not None and own.live():
            return own
        loop = asyncio.get_running_loop()
        attempt = _Attempt(new_id(), loop.create_future())
        self._attempt = attempt
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                await self._send_join(attempt.joinid)
                wait = min(JOIN_RESEND_SECONDS, max(0.1, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(attempt.done), wait)
        finally:
            self._attempt = None
        if attempt.unchecked:  # with a wrong secret, no member's admission can be checked: say what was heard
            raise UserError(
                f"The join was not accepted: an agent answered {attempt.unchecked!r}, and with this invite its "
                "membership could not be checked.",
                DENY_HINTS.get(attempt.unchecked, "Ask the group's founder for a fresh invite."),
            )
        raise NetworkError(
            f"No member answered the join request within {timeout:.0f} s.",
            "An admitted member must be online to let you in: start the founder's app or `shoal group run`.",
        )

    async def _send_join(self, joinid: str) -> None:
        node = self.node
        assert node.identity is not None
        data = {
            "agentid": node.agent_id,
            "name": node.name,
            "publickey": node.identity.public_b64,
            "boxkey": node.box_public,
            "joinid": joinid,
        }
        await node.publish(CONTROL_JOIN, data, suffix="control", key=node.agent_id, correlationid=joinid)

    async def _on_challenge(self, incoming: Incoming, _event: Event) -> None:
        envelope, attempt = incoming.envelope, self._attempt
        data = envelope.data
        if attempt is None or data.get("joinid") != attempt.joinid or envelope.recipient != self.node.agent_id:
            return
        node = self.node
        assert node.membership.invite is not None
        fields = self._own_fields(str(data.get("challenge", "")), attempt.joinid)
        proof = node.membership.invite.proof(fields)
        reply = {"joinid": attempt.joinid, "challengeid": envelope.id, "proof": proof}
        await node.publish(
            CONTROL_PROOF,
            reply,
            suffix="control",
            key=node.agent_id,
            correlationid=attempt.joinid,
            causationid=envelope.id,
            recipient=envelope.agentid,
        )

    async def _on_deny(self, incoming: Incoming, _event: Event) -> None:
        envelope, attempt = incoming.envelope, self._attempt
        data, membership = envelope.data, self.node.membership
        if attempt is None or data.get("joinid") != attempt.joinid or attempt.done.done():
            return
        if envelope.agentid != membership.founder and membership.status(envelope.agentid) != "admitted":
            log.warning("group: a refusal of the join from %s, not known as a member, waits", envelope.agentid)
            known_reason = str(data.get("reason", ""))
            attempt.unchecked = known_reason if known_reason in DENY_HINTS else "refused"
            return  # anyone can send a deny: only a member's (or the founder's) ends the join at once
        reason = str(data.get("reason", "refused"))
        known = reason if reason in DENY_HINTS else "refused"  # our own words: a deny's text is not shown
        message = f"The group refused the join ({known})."
        attempt.done.set_exception(UserError(message, DENY_HINTS.get(known, "Ask the group's founder.")))

    async def _on_admit(self, incoming: Incoming, event: Event) -> None:
        agentid = str(incoming.envelope.data.get("agentid", ""))
        admission = self.node.membership.admitted.get(agentid)
        attempt = self._attempt
        mine = agentid == self.node.agent_id
        if admission is not None and mine and attempt is not None and not attempt.done.done():
            attempt.done.set_result(admission)

    async def _on_revoke(self, incoming: Incoming, _event: Event) -> None:
        target = str(incoming.envelope.data.get("agentid", ""))
        if target in self.node.membership.revoked:
            log.warning("group: %s was removed from the group by %s", target, incoming.envelope.agentid)

    # --- the member that answers ---------------------------------------------------------------------------

    def _answers(self, joiner: str) -> bool:
        """One member answers a join: a live orchestrator, else the live member with the lowest agent id."""
        node, membership = self.node, self.node.membership
        if node.ephemeral or membership.status(node.agent_id) != "admitted" or not node.live():
            return False
        own = membership.admitted[node.agent_id]
        if own.role == "ephemeral":
            return False
        pool = [
            m
            for m in node.members()
            if membership.status(m.agentid) == "admitted" and "ephemeral" not in m.capabilities and m.agentid != joiner
        ]
        orchestrators = [m for m in pool if is_orchestrator(m)]
        pool = orchestrators or pool
        return not pool or min(m.agentid for m in pool) == node.agent_id

    async def _on_join(self, incoming: Incoming, event: Event) -> None:
        envelope = incoming.envelope
        membership = self.node.membership
        if not membership.enforced or envelope.agentid == self.node.agent_id or not self._answers(envelope.agentid):
            return
        data = envelope.data
        if (seconds_since(envelope.time) or float("inf")) > JOIN_FRESH_SECONDS:
            await self._refuse(envelope, "join-replayed", "a join request older than two minutes", deny=False)
            return
        why = self._admissible(envelope.agentid, str(data.get("name", "")))
        if why is not None:
            await self._refuse(envelope, *why)
            return
        self._forget_old()
        if sum(not c.used for c in self._challenges.values()) >= MAX_OPEN_CHALLENGES:
            log.warning("group: %d join requests are open; %s must ask again", MAX_OPEN_CHALLENGES, envelope.agentid)
            return
        key = PublicKey(str(data.get("publickey", "")))  # the intake checked it against the sender
        self._newcomer_keys[envelope.agentid] = key
        challenge = b64url(secrets.token_bytes(32))
        expires = datetime.now(UTC) + timedelta(seconds=CHALLENGE_SECONDS)
        joinid = str(data.get("joinid") or envelope.correlationid)
        out, _ = await self.node.publish(
            CONTROL_CHALLENGE,
            {"joinid": joinid, "challenge": challenge, "expiresat": iso_utc(expires)},
            suffix="control",
            key=envelope.agentid,
            correlationid=envelope.correlationid,
            causationid=envelope.id,
            recipient=envelope.agentid,
        )
        self._challenges[out.id] = _Challenge(
            joinid, envelope.agentid, dict(data), challenge, time.monotonic() + CHALLENGE_SECONDS
        )
        self._forget_old()

    def _admissible(self, agentid: str, name: str) -> tuple[str, str] | None:
        membership = self.node.membership
        if agentid in membership.revoked:
            return "revoked", f"{agentid} was removed from the group"
        known = membership.admitted.get(agentid)
        if known is not None and known.role != "ephemeral" and known.name != name:
            return "name-mismatch", f"{agentid} is a member as {known.name!r}, not {name!r}"
        holder = membership.holder_of(name)
        if holder is not None and holder != agentid:
            return "name-taken", f"{name!r} is the name of member {holder}"
        return None

    async def _on_proof(self, incoming: Incoming, event: Event) -> None:
        envelope = incoming.envelope
        if envelope.recipient != self.node.agent_id or not self.node.membership.enforced:
            return
        data = envelope.data
        open_ = self._challenges.get(str(data.get("challengeid", "")))
        if open_ is None or open_.used or open_.newcomer != envelope.agentid:
            await self._refuse(envelope, "join-replayed", "no open challenge for this proof (used, or never made)")
            return
        if time.monotonic() > open_.expires:
            await self._refuse(envelope, "join-replayed", "the challenge expired")
            return
        open_.used = True
        fields = {**open_.join, "challenge": open_.challenge, "joinid": open_.joinid}
        invite = self.node.membership.invite
        assert invite is not None
        name = str(fields.get("name", ""))
        if not invite.check(proof_fields(fields), data.get("proof")):
            await self._refuse(envelope, "wrong-secret", "the proof does not match the group's join secret", name=name)
            return
        # A person may take minutes to answer: never inside the reader's handler (it would stop reading).
        task = asyncio.create_task(self._decide(envelope, open_, fields), name=f"shoal-join-{open_.newcomer[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, envelope: Envelope, open_: _Challenge, fields: dict[str, Any]) -> None:
        name = str(fields.get("name", ""))
        try:
            verdict = await asyncio.wait_for(self._approve(open_), APPROVAL_SECONDS)
        except TimeoutError:
            verdict = ("declined", "nobody answered the approval request in time")
        if verdict is not None:
            await self._refuse(envelope, *verdict, name=name)
            return
        why = self._admissible(open_.newcomer, name)  # the picture may have changed while a person decided
        if why is not None:
            await self._refuse(envelope, *why, name=name)
            return
        admit = {
            **proof_fields(fields),
            "proof": envelope.data.get("proof"),
            "role": "member",
            "admittedby": self.node.agent_id,
        }
        await self.node.publish(
            CONTROL_ADMIT,
            admit,
            suffix="control",
            key=open_.newcomer,
            correlationid=envelope.correlationid,
            causationid=envelope.id,
        )
        await self._record(
            envelope, "admitted", f"{fields.get('name')} joined", status="ok", name=str(fields.get("name"))
        )

    async def _approve(self, challenge: _Challenge) -> tuple[str, str] | None:
        if self.node.settings.join_approval != "manual":
            return None
        if self.approver is None:
            return "approval-unavailable", "manual approval is on and nobody is here to approve"
        request = {
            "agentid": challenge.newcomer,
            "name": str(challenge.join.get("name", "")),
            "group": self.node.group_name,
        }
        try:
            allowed = await self.approver(request)
        except Exception as exc:
            log.warning("group: asking to approve a join failed: %s", exc)
            allowed = False
        return None if allowed else ("declined", "an admin declined the request")

    async def _on_repeat(self, incoming: Incoming, event: Event) -> None:
        """The same join or proof envelope read again while live: someone re-sent recorded bytes."""
        envelope = incoming.envelope
        if not self.node.live() or not self.node.membership.enforced or envelope.agentid == self.node.agent_id:
            return
        if envelope.type == CONTROL_PROOF and envelope.recipient != self.node.agent_id:
            return
        if envelope.type == CONTROL_JOIN and not self._answers(envelope.agentid):
            return
        await self._refuse(envelope, "join-replayed", "an envelope of a past join exchange was sent again", deny=False)

    # --- refusals and records ---------------------------------------------------------------------------

    async def _refuse(self, envelope: Envelope, reason: str, detail: str, *, deny: bool = True, name: str = "") -> None:
        log.warning("group: refused a join by %s (%s): %s", envelope.agentid, reason, detail)
        await self._record(envelope, reason, detail, status="error", name=name)
        if deny:
            joinid = str(envelope.data.get("joinid") or envelope.correlationid)
            message = f"The group refused the join ({reason}): {detail}."
            await self.node.publish(
                CONTROL_DENY,
                {"joinid": joinid, "reason": reason, "message": message},
                suffix="control",
                key=envelope.agentid,
                correlationid=envelope.correlationid,
                causationid=envelope.id,
                recipient=envelope.agentid,
            )

    async def _record(self, envelope: Envelope, outcome: str, detail: str, *, status: str, name: str = "") -> None:
        """A `group.membership` event in the timeline and its audit record, in one transaction."""
        node = self.node
        remote = envelope.trace
        trace = TraceContext(remote.trace_id, TraceContext.new_root().span_id, remote.span_id)
        payload = {
            "outcome": outcome,
            "detail": detail[:300],
            "agentid": envelope.agentid,
            "name": (name or str(envelope.data.get("name", "")))[:100],
            "envelope": envelope.summary("control"),
        }
        event = Event.new(
            "group.membership",
            session_id="",
            trace=trace,
            correlation_id=envelope.correlationid,
            name=outcome,
            status=status,
            payload=payload,
        )
        items = node.audit_items([(audit.step_record(event), event)])
        rows = await node.db.write(_writer(items, [event], None))
        node.timeline.notify([event])
        node.sender.hand(rows)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for cid in [c for c, ch in self._challenges.items() if ch.expires + CHALLENGE_SECONDS < now]:
            del self._challenges[cid]
        waiting = {ch.newcomer for ch in self._challenges.values()}
        for agentid in [a for a in self._newcomer_keys if a not in waiting]:
            del self._newcomer_keys[agentid]

    async def close(self) -> None:
        """Stop decisions waiting for a person (the node is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
