"""Founding a closed group and joining one with an invite: the steps `shoal group create|join` and the
desktop's Connect-to-group dialog share (docs/groups.md). The caller owns the node (a command's short-lived
member speaking as this machine's identity, or the app's own runtime) and has brought it online."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from core.errors import UserError
from core.group.identity import load_or_create
from core.group.invite import Invite, store_invite
from core.group.membership import Admission

if TYPE_CHECKING:
    from core.group.node import GroupNode


async def make_invite(group: str, scope: str, bootstrap: list[str], security_protocol: str) -> Invite:
    """A new join secret naming this machine's identity as founder, kept in the keyring (before joining, so
    the node that starts next holds it and runs the group closed)."""
    identity = await asyncio.to_thread(load_or_create, group, scope)
    invite = Invite.create(group, identity.agent_id, bootstrap, security_protocol)
    await asyncio.to_thread(store_invite, invite, scope)
    return invite


async def keep_invite(code: str, scope: str) -> Invite:
    invite = Invite.parse(code)
    await asyncio.to_thread(store_invite, invite, scope)
    return invite


async def found(node: GroupNode, *, force: bool, wait: float) -> None:
    """Admit the founder (this node's identity, which must be the invite's founder); refuse to take over a
    name other agents already announce under, unless `force`."""
    membership = node.membership
    if membership.invite is None or membership.founder != node.agent_id:
        raise UserError("This agent is not the founder named in the group's invite.", "Create the group again.")
    others = [m for m in node.members() if m.agentid != node.agent_id]
    if others and not force:
        raise UserError(
            f"Agents already announce in group {node.group_name!r} ({len(others)}).",
            "Pick another name, or found it anyway (--force) to close it under a new secret.",
        )
    await node.onboarding.found()
    if not await membership.wait_admitted(node.agent_id, wait):
        raise UserError("The founding record did not come back from the broker.", "Check it: shoal kshark")


async def join(node: GroupNode, timeout: float) -> Admission:
    """The handshake (core/group/onboarding.py), as this node's identity."""
    return await node.onboarding.join(timeout)
