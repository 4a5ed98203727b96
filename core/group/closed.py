"""Whether a node's group is closed, and what that needs at start: the join secret, the membership read from
the control topic, the zones and this agent's X25519 key for private zones (docs/groups.md)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from core.group.invite import load_invite
from core.group.membership import Membership
from core.group.zonecrypt import BoxKey, load_or_create_box_key
from core.group.zones import Zones

if TYPE_CHECKING:
    from core.group.node import GroupNode


async def load_membership(node: GroupNode) -> None:
    """A closed group when this agent holds the group's join secret (unless group.admission is `open`)."""
    assert node.identity is not None
    settings = node.settings
    if node.invite is None and settings.admission != "open":
        node.invite = await asyncio.to_thread(load_invite, node.group_name, node.identity_scope)
    membership = Membership(node.invite, node.identity.agent_id, enforce=settings.admission != "open")
    node.membership = membership
    node.zones = Zones(membership, settings.zone)
    if membership.enforced:
        if node.fresh_identity:  # a command's identity: a fresh key, or the kept session's
            node.box_key = node.session.box_key if node.session is not None else BoxKey.generate()
        else:  # the machine's identity: its own
            node.box_key = await asyncio.to_thread(load_or_create_box_key, node.group_name, node.identity_scope)
        node.box_public = node.box_key.public_b64
    membership.on_admitted = lambda card, replayed: node.roster.apply(card, replayed=replayed)
    node.roster.pinned_name = membership.pinned_name

    def changed(change: str, agentid: str) -> None:
        if change == "revoked":  # gone from every roster at once, not after three missed heartbeats
            node.roster.drop(agentid)

    membership.add_listener(changed)
