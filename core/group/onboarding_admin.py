"""What an admitted member does for the group beyond answering joins (docs/groups.md): the founder's first
admission, admitting this machine's short-lived command sessions, revoking members and defining zones.

Mixed into `Onboarding`. Each record here is signed by the identity that speaks for this machine (for a
command session, the machine's admitted identity, not the session's), so members can check who decided.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import NetworkError, UserError
from core.group.envelope import make
from core.group.identity import Identity, b64url
from core.group.membership import CONTROL_ADMIT, CONTROL_REVOKE, CONTROL_ZONE
from core.group.outbox import OutItem
from core.group.publisher import Outgoing
from core.timeline.ids import TraceContext, iso_utc, new_id

if TYPE_CHECKING:
    from core.group.node import GroupNode

SESSION_HOURS = 1


async def read_back(applied: Callable[[], bool], timeout: float) -> None:
    """Waits until `applied()`: a control record this agent published takes effect only when read back from the
    topic (as on every member), so a command or dialog that changed something waits for that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not applied():
        if loop.time() > deadline:
            raise NetworkError("The broker did not confirm the change in time.", "Check the connection: shoal kshark")
        await asyncio.sleep(0.05)


class AdminActions:
    node: GroupNode

    async def found(self) -> None:
        """The founder admits itself (the root every member checks other admissions against)."""
        await self._self_admit(self._signer(), "founder", "")

    async def admit_session(self, parent: Identity, timeout: float) -> None:
        """A short-lived command-line member, admitted for an hour by this machine's admitted identity."""
        expires = iso_utc(datetime.now(UTC) + timedelta(hours=SESSION_HOURS))
        await self._self_admit(parent, "ephemeral", expires)
        if not await self.node.membership.wait_admitted(self.node.agent_id, timeout):
            raise NetworkError(
                "The group did not confirm this session's admission in time.",
                "Check the connection (shoal kshark) and that this machine is a member.",
            )

    async def revoke(self, agentid: str, reason: str) -> None:
        membership = self.node.membership
        if not membership.is_admin(self._signer().agent_id):
            raise UserError("Only the group's founder can remove members.", "Run this on the founder's machine.")
        data = {"agentid": agentid, "reason": reason}
        await self._publish_as(self._signer(), CONTROL_REVOKE, data, key=agentid)

    async def define_zone(self, zone: str, members: list[str], description: str = "") -> None:
        """Define, change (a new member list replaces the old) or remove (no members) a private zone."""
        if not self.node.membership.is_admin(self._signer().agent_id):
            raise UserError("Only the group's founder can define zones.", "Run this on the founder's machine.")
        data = {"zone": zone, "members": members, "description": description}
        await self._publish_as(self._signer(), CONTROL_ZONE, data, key=zone)

    def _signer(self) -> Identity:
        """The identity that speaks for this machine: the persistent one for a session member."""
        identity = self.node.parent_identity or self.node.identity
        assert identity is not None
        return identity

    def _own_fields(self, challenge: str, joinid: str) -> dict[str, Any]:
        """What a proof of this agent binds (invite.PROOF_FIELDS): who it is, its keys, and the exchange."""
        node = self.node
        assert node.identity is not None
        return {
            "agentid": node.agent_id,
            "name": node.name,
            "publickey": node.identity.public_b64,
            "boxkey": node.box_public,
            "challenge": challenge,
            "joinid": joinid,
        }

    async def _self_admit(self, signer: Identity, role: str, expires: str) -> None:
        node = self.node
        assert node.membership.invite is not None
        fields = self._own_fields(b64url(secrets.token_bytes(32)), new_id())
        data = {
            **fields,
            "proof": node.membership.invite.proof(fields),
            "role": role,
            "admittedby": signer.agent_id,
            **({"expiresat": expires} if expires else {}),
        }
        await self._publish_as(signer, CONTROL_ADMIT, data, key=node.agent_id)

    async def _publish_as(self, signer: Identity, event_type: str, data: dict[str, Any], *, key: str) -> None:
        node = self.node
        envelope = make(
            signer,
            node.group_name,
            event_type,
            data,
            correlationid=new_id(),
            trace=TraceContext.new_root(),
            zone=node.settings.zone,
        )
        await node.commit([Outgoing(OutItem(envelope, node.topic("control"), key), None, [])])
