"""Shared memory: an agent publishes a memory item to the group's `memory` topic; every member that reads it
indexes it in its own memory, with provenance (who shared it, when, and the trace it belongs to).

No central index exists: each agent embeds the items it receives with its own model, so retrieval works
offline and with any mix of embedding models across the group. Items are broadcast (every member reads the
whole topic) and keyed by the sharer's agent id. A repeat (a redelivery, or the same item shared again) replaces
the earlier copy, since items are stored by (sharer, item id). Large items travel by reference like any other
payload (`group.max_inline_bytes`, core/group/claimcheck.py).

Labels (core/policy/): sharing is checked against the policy first (action `zone`, target this agent's zone,
the item's label), and the item carries its label so members store it with it.

Zones: an item carries its sharer's zone. A member indexes items of the `public` and `shared` zones and of
its own zone; private zones are end-to-end encrypted for their members (group operations), and until then an
item from another private zone is not indexed (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import UserError
from core.group.envelope import MEMORY_ITEM
from core.group.intake import Incoming
from core.memory.store import SourceRow
from core.timeline.ids import new_id, now_iso
from core.timeline.store import Event
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolSpec

log = logging.getLogger(__name__)
OPEN_ZONES = frozenset({"public", "shared"})
# (text, explicit label, floor, fallback, context) -> the label to carry; raises PolicyDenied (GroupRuntime sets it)
Authorize = Callable[[str, str | None, str | None, str | None, dict[str, Any]], Awaitable[str]]
MAX_SHARED_CHARS = 200_000  # a shared item is a note or a short document, not a corpus


class SharedMemory:
    def __init__(self, node: Any, memory: Any) -> None:
        self.node = node  # core.group.node.GroupNode
        self.memory = memory  # core.memory.service.Memory
        self.received = 0
        self.refused = 0
        self.authorize: Authorize | None = None  # the policy's check before anything is shared

    def attach(self) -> None:
        self.node.on(MEMORY_ITEM, self.receive)

    async def share(
        self,
        text: str,
        *,
        tags: list[str] | None = None,
        title: str = "",
        session_id: str = "",
        parent: Any = None,
        label: str | None = None,
        floor: str | None = None,
        fallback: str | None = None,
        correlation_id: str = "",
        requester: Any = None,
    ) -> str:
        """Publish `text` to the group (and keep it in this agent's memory too). Returns the item id.
        Its label is `label` (the person's word), else the classifier's or `floor` (the turn it came from), else
        `fallback`; the policy must let that label into this agent's zone (raises PolicyDenied otherwise)."""
        text = text.strip()
        if not text:
            raise UserError("Nothing to share: the text is empty.", "Pass the text to share.")
        if len(text) > MAX_SHARED_CHARS:
            raise UserError(
                f"The item is {len(text)} characters; the limit is {MAX_SHARED_CHARS}.",
                "Share a summary, or put the document in a shared folder.",
            )
        context = {"session_id": session_id, "parent": parent, "correlation_id": correlation_id, "requester": requester}
        if self.authorize is not None:
            label = await self.authorize(text, label, floor, fallback, context)
        itemid, now = new_id(), now_iso()
        data = {
            **({"label": label} if label else {}),
            "itemid": itemid,
            "text": text,
            "tags": list(tags or []),
            "title": title or text[:80],
            "source": "note",
            "createdat": now,
        }
        envelope, _ = await self.node.publish(
            MEMORY_ITEM,
            data,
            suffix="memory",
            key=self.node.agent_id,
            correlationid=itemid,
            parent=parent,
            session_id=session_id,
        )
        await self._store(envelope, data, self.node.agent_id, self.node.settings.display_name())
        return itemid

    async def receive(self, incoming: Incoming, event: Event) -> None:
        envelope = incoming.envelope
        if envelope.agentid == self.node.agent_id:
            return  # our own item: stored when it was shared
        own_zone = self.node.settings.zone
        zones = self.node.zones
        allowed = (
            zones.allows(self.node.agent_id, envelope.zone)
            if zones is not None
            else envelope.zone in OPEN_ZONES or envelope.zone == own_zone
        )
        if not allowed:
            self.refused += 1
            log.info(
                "memory item %s from zone %s not indexed (this agent is in %s)", envelope.id, envelope.zone, own_zone
            )
            return
        data = envelope.data or {}
        if not isinstance(data.get("text"), str) or not data.get("itemid"):
            log.warning("memory item %s without text or itemid: ignored", envelope.id)
            return
        if len(data["text"]) > MAX_SHARED_CHARS:
            self.refused += 1
            log.warning(
                "memory item %s is %d characters (limit %d): not indexed",
                envelope.id,
                len(data["text"]),
                MAX_SHARED_CHARS,
            )
            return
        member = self.node.roster.get(envelope.agentid)
        await self._store(envelope, data, envelope.agentid, member.name if member else "")
        self.received += 1

    async def _store(self, envelope: Any, data: dict[str, Any], agentid: str, name: str) -> None:
        created = min(str(data.get("createdat") or envelope.time), now_iso())  # a peer's clock is not trusted
        raw_tags = data.get("tags")
        tags: list[Any] = raw_tags if isinstance(raw_tags, list) else []
        source = SourceRow(
            id=new_id(),
            kind="shared",
            uri=f"{agentid}:{data['itemid']}",
            title=str(data.get("title") or data["text"])[:200],
            zone=envelope.zone,
            tags=" ".join(str(t)[:50] for t in tags[:20]),
            origin_agent=agentid,
            origin_name=name,
            origin_trace=envelope.trace.trace_id,
            origin_envelope=envelope.id,
            created_at=created,
            updated_at=now_iso(),
            label=lenient(data.get("label")),
        )
        await self.memory.put(source, self.memory.chunks_of(str(data["text"]), "text"))


def lenient(value: object) -> str | None:
    """A peer's label, if it is one we know (unknown or missing: unlabelled, so our own rules decide)."""
    from core.policy.labels import lenient_label

    found = lenient_label(value)
    return found.value if found else None


class ShareMemoryTool(Tool):
    spec = ToolSpec(
        name="share_memory",
        description=(
            "Share a fact or note with every agent of the group (they index it in their own memory, "
            "credited to you). Use for knowledge useful to peers; never for private data."
        ),
        parameters={
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "description": "self-contained text to share"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        risk=RiskTier.HIGH,  # it leaves this machine
        source="group",
    )

    def __init__(self, shared: SharedMemory) -> None:
        self.shared = shared

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        itemid = await self.shared.share(
            args["text"],
            tags=args.get("tags") or [],
            session_id=ctx.session_id,
            parent=ctx.trace,
            floor=ctx.label or None,
            correlation_id=ctx.correlation_id,
            requester=ctx.requester,
        )
        return ToolOutput(f"Shared with the group (item {itemid[-8:]}).", {"itemid": itemid})
