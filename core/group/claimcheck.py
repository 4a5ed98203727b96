"""Large payloads by reference (the claim-check pattern, protocol §6).

The sender stores the JSON bytes of an oversized `data` as a content-addressed artifact and sends the
reference; the receiver fetches it from its own store by digest and checks it. The broker's message limit
is never the thing that fails.
"""

from __future__ import annotations

import json
from typing import Any

from core.group.artifacts import ArtifactRef, ArtifactStore, offload
from core.group.envelope import Envelope, EnvelopeRejected

MEDIA_TYPE = "application/json"


async def seal(data: dict[str, Any], store: ArtifactStore | None, limit: int) -> dict[str, Any] | None:
    """None when `data` fits inline; else the `dataref` to send instead (the artifact is stored first)."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) <= limit:
        return None
    ref = await offload(raw, MEDIA_TYPE, store, limit)
    assert ref is not None  # offload only returns None for payloads within the limit
    return {"uri": ref.uri, "digest": ref.digest, "size": ref.size}


async def resolve(envelope: Envelope, store: ArtifactStore | None) -> Envelope:
    """The envelope with its payload in place, fetched and verified if it travelled by reference."""
    if not envelope.by_reference:
        return envelope
    if store is None:
        raise EnvelopeRejected(
            "unresolvable", "payload sent by reference but group.artifacts is not configured", envelope.summary()
        )
    attrs = envelope.attrs
    ref = ArtifactRef(str(attrs["dataref"]), str(attrs["datadigest"]), int(attrs["datasize"]), MEDIA_TYPE)
    raw = await store.get(ref)
    try:
        data = json.loads(raw)
    except ValueError:
        raise EnvelopeRejected("malformed", "referenced payload is not JSON", envelope.summary()) from None
    if not isinstance(data, dict):
        raise EnvelopeRejected("malformed", "referenced payload is not a JSON object", envelope.summary())
    return envelope.with_data(data)
