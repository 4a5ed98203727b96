"""The zone rule on the receiving side: open a private zone's sealed payload, and never hand on a task or
memory item from a zone this agent is not in (docs/groups.md, "Zones").

A sealed payload not sealed for this agent is skipped without a record, like an envelope addressed to another
agent: every non-member reads the zone's broadcast items, and recording each would only fill the audit trail.
A plaintext task or memory item from a zone this agent is not in, or a sealed payload that does not open, is
dropped and audited (`not-in-zone`, `undecryptable`). In an open group zones are only what each agent
declares (group.zone): there the shared memory alone filters items by zone, as protocol 1.0 did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.group.envelope import MEMORY_ITEM, TASK_REQUEST, Envelope, EnvelopeRejected

if TYPE_CHECKING:
    from core.group.node import GroupNode

GATED_TYPES = (TASK_REQUEST, MEMORY_ITEM)


def open_zone(node: GroupNode, envelope: Envelope, topic: str) -> Envelope | EnvelopeRejected | None:
    sealed = envelope.attrs.get("data", {}).get("sealed") if isinstance(envelope.attrs.get("data"), dict) else None
    zones = node.zones
    if sealed is not None and len(envelope.data) == 1:
        return _open(node, envelope, sealed, topic)
    closed = node.membership.enforced  # in an open group zones are self-declared: shared memory filters items
    if closed and zones is not None and envelope.type in GATED_TYPES and not zones.allows(node.agent_id, envelope.zone):
        detail = f"a {envelope.type} from zone {envelope.zone!r}, which this agent is not in"
        return EnvelopeRejected("not-in-zone", detail, envelope.summary(topic))
    return envelope


def _open(node: GroupNode, envelope: Envelope, sealed: object, topic: str) -> Envelope | EnvelopeRejected | None:
    from core.group import zonecrypt

    if node.box_key is None:
        return None  # an open-group agent holds no zone key: it cannot be in a private zone
    try:
        aad = zonecrypt.aad_for(envelope.attrs)
        data = zonecrypt.open_sealed(
            sealed if isinstance(sealed, dict) else {}, agentid=node.agent_id, key=node.box_key, aad=aad
        )
    except zonecrypt.ZoneSealError as exc:
        if exc.reason == "not-a-recipient":
            return None
        return EnvelopeRejected(
            "undecryptable", f"the sealed payload does not open ({exc.reason})", envelope.summary(topic)
        )
    except TypeError as exc:
        return EnvelopeRejected("malformed", str(exc), envelope.summary(topic))
    return envelope.with_data(data)
