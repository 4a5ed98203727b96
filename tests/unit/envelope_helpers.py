"""Shared builders for the envelope tests (test_envelope*.py): the identities, realistic signed envelopes (one
per event type, after docs/protocol.md's examples), a by-reference envelope, and hand-signing/encoding helpers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.group.envelope import (
    AUDIT_RECORD,
    MEMORY_ITEM,
    ROSTER_ANNOUNCE,
    ROSTER_LEAVE,
    TASK_PROGRESS,
    TASK_REQUEST,
    TASK_RESULT,
    TRACE_SPAN,
    Envelope,
    canonical,
    make,
)
from core.group.identity import Identity, PublicKey
from core.timeline.ids import TraceContext

GROUP = "crew"

SENDER = Identity.generate()
REQUESTER = Identity.generate()
STRANGER = Identity.generate()
SENDER_KEY = PublicKey(SENDER.public_b64)
STRANGER_KEY = PublicKey(STRANGER.public_b64)
DIGEST = "sha256:" + hashlib.sha256(b"payload").hexdigest()


def _envelope(
    event_type: str = TASK_RESULT,
    data: dict[str, Any] | None = None,
    *,
    identity: Identity = SENDER,
    **kwargs: Any,
) -> Envelope:
    kwargs.setdefault("correlationid", "0190c3f5a2b87d3e9f10a1b2c3d4e5f6")
    kwargs.setdefault("trace", TraceContext.new_root())
    return make(identity, GROUP, event_type, data if data is not None else {"taskid": "t1", "status": "ok"}, **kwargs)


def _signed(attrs: dict[str, Any], identity: Identity = SENDER) -> dict[str, Any]:
    """`attrs` signed the way a peer does it by hand (protocol §3), whatever attributes it holds."""
    body = {k: v for k, v in attrs.items() if k != "signature"}
    return {**body, "signature": identity.sign(canonical(body))}


def _encode(attrs: Any) -> bytes:
    return json.dumps(attrs).encode("utf-8")


# --- realistic payloads, one per event type (after the document's examples) ---------------------------------


def _examples() -> dict[str, dict[str, Any]]:
    sender, requester = SENDER.agent_id, REQUESTER.agent_id
    return {
        ROSTER_ANNOUNCE: {
            "agentid": sender,
            "name": "laptop",
            "description": "writes and reviews code",
            "skills": [{"name": "coder", "description": "writes Python"}],
            "model": "qwen2.5-7b-instruct-q4",
            "zone": "public",
            "publickey": SENDER.public_b64,
            "capabilities": ["task", "stream"],
            "version": "shoal 0.1.0",
            "heartbeatms": 5000,
            "startedat": "2026-11-21T10:00:00Z",
            "status": "idle",
            "activetasks": 0,
        },
        ROSTER_LEAVE: {"agentid": sender, "reason": "quit"},
        TASK_REQUEST: {
            "taskid": "0190c3f5a2b87d3e9f10a1b2c3d4e5f6",
            "skill": "coder",
            "input": "Write a haiku about tides 🌊",
            "deadline": "2026-11-21T10:02:00Z",
            "depth": 0,
            "maxdepth": 3,
            "requester": {"agentid": requester, "name": "laptop"},
        },
        TASK_PROGRESS: {
            "taskid": "0190c3f5a2b87d3e9f10a1b2c3d4e5f6",
            "state": "accepted",
            "step": 1,
            "steps": 3,
            "message": "reading files",
            "delta": "partial answer text",
            "elapsedms": 1200,
            "agent": {"agentid": sender, "name": "desk"},
        },
        TASK_RESULT: {
            "taskid": "0190c3f5a2b87d3e9f10a1b2c3d4e5f6",
            "status": "ok",
            "output": "Tides fold and unfold…",
            "elapsedms": 5400,
            "usage": {"inputtokens": 120, "outputtokens": 48},
            "agent": {"agentid": sender, "name": "desk"},
        },
        TRACE_SPAN: {
            "spanid": "a1b2c3d4e5f60718",
            "parentspanid": "0102030405060708",
            "name": "llm.response",
            "kind": "llm.response",
            "status": "ok",
            "starttime": "2026-11-21T10:00:01.250000Z",
            "durationms": 812,
            "attributes": {"model": "qwen2.5-7b-instruct-q4", "outputtokens": 48},
        },
        AUDIT_RECORD: {
            "records": [
                {
                    "action": "sent",
                    "at": "2026-11-21T10:00:05.123456Z",
                    "envelope": {
                        "id": "0190c3f5b0007d3e9f10a1b2c3d4e5f6",
                        "type": TASK_RESULT,
                        "agentid": sender,
                        "correlationid": "0190c3f5a2b87d3e9f10a1b2c3d4e5f6",
                        "causationid": "0190c3f5a2b87d3e9f10a1b2c3d4e5f6",
                        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                        "recipient": requester,
                        "topic": "group.crew.responses",
                    },
                },
                {
                    "action": "step",
                    "at": "2026-11-21T10:00:02Z",
                    "correlationid": "0190c3f5a2b87d3e9f10a1b2c3d4e5f6",
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
                    "parentspanid": "b7ad6b7169203331",
                    "step": {"kind": "tool.call", "name": "read_file", "status": "ok", "model": None, "durationms": 3},
                },
                {
                    "action": "dropped",
                    "at": "2026-11-21T10:00:03Z",
                    "reason": "bad-signature",
                    "envelope": {"id": "0190c3f5a9997d3e9f10a1b2c3d4e5f6", "type": TASK_REQUEST},
                },
            ]
        },
        MEMORY_ITEM: {
            "itemid": "0190c3f5c0007d3e9f10a1b2c3d4e5f6",
            "text": "The staging cluster is called ‘reef’.",
            "tags": ["infra"],
            "source": "laptop",
            "createdat": "2026-11-21T10:00:00Z",
        },
    }


def _example_envelope(event_type: str) -> Envelope:
    addressed = event_type in (TASK_PROGRESS, TASK_RESULT)
    return _envelope(
        event_type,
        _examples()[event_type],
        causationid="0190c3f5a2b87d3e9f10a1b2c3d4e5f6" if addressed else None,
        recipient=REQUESTER.agent_id if addressed else None,
    )


def _by_reference() -> Envelope:
    return _envelope(
        TASK_RESULT,
        None,
        dataref={"uri": f"file:///srv/shoal/sha256/{DIGEST[7:9]}/{DIGEST[7:]}", "digest": DIGEST, "size": 300_000},
        recipient=REQUESTER.agent_id,
    )


# The envelopes most tests change one thing of: a progress update, and a result sent by reference.
_TAMPER_BASE = _example_envelope(TASK_PROGRESS)
_BY_REFERENCE = _by_reference()
