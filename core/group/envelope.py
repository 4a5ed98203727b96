"""The wire envelope: signed CloudEvents 1.0 in JSON structured mode (docs/protocol.md §2–3).

An `Envelope` keeps the whole parsed JSON object, unknown attributes included, because the signature covers
everything the sender wrote: a reader that dropped fields it does not know could no longer verify a newer
peer's envelopes. Parsing never raises anything but `EnvelopeRejected`, whatever the bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from core.group.identity import Identity, PublicKey
from core.timeline.ids import TraceContext, new_id, now_iso

SPEC_VERSION = "1.0"
SCHEMA_MAJOR = 1
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.0"
MAX_RECORD_BYTES = 1_048_576
CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"

ROSTER_ANNOUNCE = "shoal.roster.announce"
ROSTER_LEAVE = "shoal.roster.leave"
TASK_REQUEST = "shoal.task.request"
TASK_PROGRESS = "shoal.task.progress"
TASK_RESULT = "shoal.task.result"
TASK_REPORT = "shoal.task.report"  # a child tells its parent it finished a task (docs/hierarchy.md)
TRACE_SPAN = "shoal.trace.span"
AUDIT_RECORD = "shoal.audit.record"
MEMORY_ITEM = "shoal.memory.item"

_REQUIRED = ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "group", "agentid",
             "correlationid", "traceparent", "schemaversion", "zone", "signature")  # fmt: skip
_OPTIONAL_STR = ("causationid", "recipient", "dataref", "datadigest")
_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class EnvelopeRejected(Exception):
    """Why a record was not accepted; `reason` is one of the protocol's drop reasons."""

    def __init__(self, reason: str, detail: str, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.attrs = attrs or {}


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # only these can make a lone surrogate


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes a signature covers: sorted keys, no whitespace, UTF-8 unescaped (protocol §3). NaN and
    infinities are not JSON: a sender refuses them (ValueError) rather than send what every reader drops."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def dataschema_for(event_type: str) -> str:
    return f"urn:shoal:schema:{event_type}:{SCHEMA_MAJOR}"


@dataclass(frozen=True, slots=True)
class Envelope:
    attrs: dict[str, Any]
    # The canonical bytes of `attrs` when already known (made here, or computed by `parse`): verifying and
    # sending reuse them instead of serialising again.
    wire: bytes | None = field(default=None, compare=False, repr=False)
    # The record value it was parsed from: usually the canonical form already (Shoal and the documented
    # peers send that), so the signed bytes are first cut from it, without serialising anything.
    raw: bytes | None = field(default=None, compare=False, repr=False)

    # --- the attributes ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return str(self.attrs["id"])

    @property
    def type(self) -> str:
        return str(self.attrs["type"])

    @property
    def agentid(self) -> str:
        return str(self.attrs["agentid"])

    @property
    def group(self) -> str:
        return str(self.attrs["group"])

    @property
    def correlationid(self) -> str:
        return str(self.attrs["correlationid"])

    @property
    def causationid(self) -> str | None:
        return self.attrs.get("causationid")

    @property
    def recipient(self) -> str | None:
        return self.attrs.get("recipient")

    @property
    def zone(self) -> str:
        return str(self.attrs.get("zone") or "public")

    @property
    def time(self) -> str:
        return str(self.attrs["time"])

    @property
    def trace(self) -> TraceContext:
        return TraceContext.from_traceparent(self.attrs["traceparent"])

    @property
    def data(self) -> dict[str, Any]:
        """The payload; empty for a by-reference envelope not yet resolved (see `core.group.claimcheck`)."""
        data = self.attrs.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def by_reference(self) -> bool:
        return "dataref" in self.attrs and "data" not in self.attrs

    # --- wire form ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return self.wire if self.wire is not None else canonical(self.attrs)

    def headers(self) -> list[tuple[str, bytes]]:
        """CloudEvents Kafka binding headers, so tools can filter without parsing the value."""
        out = [("content-type", CONTENT_TYPE.encode())]
        for name in ("specversion", "id", "source", "type", "time", "agentid", "correlationid", "zone", "recipient"):
            value = self.attrs.get(name)
            if value:
                out.append((f"ce_{name}", str(value).encode("utf-8")))
        out.append(("traceparent", str(self.attrs["traceparent"]).encode("ascii")))
        return out

    def verify(self, key: PublicKey) -> bool:
        signature = self.attrs.get("signature")
        if not isinstance(signature, str):
            return False
        if self.raw is not None and self.wire is None:
            cut = _without_signature(self.raw, signature)
            if cut is not None and key.verify(signature, cut):
                return True  # the signer signed exactly these bytes; json.loads of them gave `attrs`
        return key.verify(signature, self.signed_bytes())

    def signing_input(self) -> tuple[bytes, bytes]:
        """(signature bytes, the bytes it should cover) for a check elsewhere; the fast-path bytes when the
        record value is at hand (see `verify`). An unreadable signature yields bytes that never verify."""
        from core.group.identity import SIGNATURE_PREFIX, b64url_decode

        signature = self.attrs.get("signature")
        if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
            return b"", b""
        try:
            raw_signature = b64url_decode(signature[len(SIGNATURE_PREFIX) :])
        except ValueError:
            return b"", b""
        if self.raw is not None and self.wire is None:
            cut = _without_signature(self.raw, signature)
            if cut is not None:
                return raw_signature, cut
        return raw_signature, self.signed_bytes()

    def signed_bytes(self) -> bytes:
        """The canonical form without `signature`: what the signature covers. Cut out of the canonical
        form when it is known: in sorted compact JSON the top-level "signature" member is the last one of
        that name (nested objects all sit in `data`/`dataref` members, which sort before it, and a JSON
        string cannot contain an unescaped quote), and it is never the first member."""
        signature = self.attrs.get("signature")
        if self.wire is not None and isinstance(signature, str):
            cut = _without_signature(self.wire, signature)
            if cut is not None:
                return cut
        return canonical({k: v for k, v in self.attrs.items() if k != "signature"})

    def summary(self, topic: str = "") -> dict[str, Any]:
        """What the audit trail keeps of an envelope (never its payload)."""
        out = {k: self.attrs.get(k) for k in ("id", "type", "agentid", "correlationid", "causationid", "traceparent")}
        if self.recipient:
            out["recipient"] = self.recipient
        if topic:
            out["topic"] = topic
        return out

    def with_data(self, data: dict[str, Any]) -> Envelope:
        """A by-reference envelope with its fetched payload in place (the signature stays valid: it covers
        the reference and digest, and the payload was checked against the digest)."""
        return Envelope({**self.attrs, "data": data})  # no `wire`: the payload is not part of the signed form


def _without_signature(wire: bytes, signature: str) -> bytes | None:
    member = b',"signature":' + json.dumps(signature, ensure_ascii=False).encode("utf-8")
    start = wire.rfind(member)
    return wire[:start] + wire[start + len(member) :] if start > 0 else None


def make(
    identity: Identity,
    group: str,
    event_type: str,
    data: dict[str, Any] | None,
    *,
    correlationid: str,
    trace: TraceContext,
    zone: str = "public",
    causationid: str | None = None,
    recipient: str | None = None,
    dataref: dict[str, Any] | None = None,
    envelope_id: str | None = None,
) -> Envelope:
    """A signed envelope. Pass `dataref` ({"uri", "digest", "size"}) instead of `data` for a large payload;
    `envelope_id` when the payload was sealed for a private zone (its ciphertext is bound to the id)."""
    attrs: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": envelope_id or new_id(),
        "source": f"shoal://{group}/{identity.agent_id}",
        "type": event_type,
        "time": now_iso(),
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(event_type),
        "group": group,
        "agentid": identity.agent_id,
        "correlationid": correlationid,
        "traceparent": trace.traceparent,
        "schemaversion": SCHEMA_VERSION,
        "zone": zone,
    }
    if causationid:
        attrs["causationid"] = causationid
    if recipient:
        attrs["recipient"] = recipient
    if dataref is not None:
        attrs["dataref"] = dataref["uri"]
        attrs["datadigest"] = dataref["digest"]
        attrs["datasize"] = int(dataref["size"])
    else:
        attrs["data"] = data or {}
    unsigned = canonical(attrs)
    attrs["signature"] = identity.sign(unsigned)
    return Envelope(attrs, _with_signature(unsigned, attrs["signature"]))


def _with_signature(unsigned: bytes, signature: str) -> bytes:
    """The canonical form with the signature member put in its sorted place: just before "source", the next
    key (no other key sorts between them, and nested objects all sit in members that sort before)."""
    at = unsigned.rfind(b',"source":"')
    assert at > 0, "make() always sets source"
    return unsigned[:at] + b',"signature":' + json.dumps(signature).encode("ascii") + unsigned[at:]


def parse(value: bytes | None) -> Envelope:
    """Check a record value against the protocol's reading rules. Raises only `EnvelopeRejected`."""
    if value is None:
        raise EnvelopeRejected("malformed", "empty record (a tombstone?)")
    if len(value) > MAX_RECORD_BYTES:
        raise EnvelopeRejected("too-large", f"{len(value)} bytes")
    try:
        attrs = _DECODER.decode(value.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EnvelopeRejected("malformed", f"not UTF-8 JSON: {exc}") from None
    if not isinstance(attrs, dict):
        raise EnvelopeRejected("malformed", "not a JSON object")
    for name in _REQUIRED:
        if not isinstance(attrs.get(name), str) or not attrs[name]:
            raise EnvelopeRejected("malformed", f"missing or non-string attribute {name!r}", _safe(attrs))
    for name in _OPTIONAL_STR:
        if name in attrs and not isinstance(attrs[name], str):
            raise EnvelopeRejected("malformed", f"attribute {name!r} is not a string", _safe(attrs))
    if attrs["specversion"] != SPEC_VERSION:
        raise EnvelopeRejected("unsupported-version", f"CloudEvents specversion {attrs['specversion']!r}", _safe(attrs))
    match = _VERSION.fullmatch(attrs["schemaversion"])
    if match is None:
        raise EnvelopeRejected("malformed", "schemaversion is not <major>.<minor>", _safe(attrs))
    if int(match.group(1)) != SCHEMA_MAJOR:
        raise EnvelopeRejected(
            "unsupported-version",
            f"protocol {attrs['schemaversion']} (this agent speaks {SCHEMA_VERSION})",
            _safe(attrs),
        )
    _check_payload(attrs)
    if not _TRACEPARENT.fullmatch(attrs["traceparent"]) or attrs["traceparent"].startswith("ff"):
        raise EnvelopeRejected("malformed", "traceparent is not W3C Trace Context", _safe(attrs))
    if _SURROGATE_ESCAPE.search(value):
        try:
            canonical(attrs)  # lone surrogates (\ud800) parse as JSON but have no UTF-8 form to verify
        except UnicodeEncodeError:
            raise EnvelopeRejected("malformed", "a string holds an unpaired surrogate", _safe(attrs)) from None
    return Envelope(attrs, raw=value)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)  # one decoder: json.loads with options builds one a call


def _check_payload(attrs: dict[str, Any]) -> None:
    if "data" in attrs:
        if not isinstance(attrs["data"], dict):
            raise EnvelopeRejected("malformed", "data is not a JSON object", _safe(attrs))
        return
    if "dataref" not in attrs:
        raise EnvelopeRejected("malformed", "neither data nor dataref", _safe(attrs))
    digest, size = attrs.get("datadigest"), attrs.get("datasize")
    valid_size = isinstance(size, int) and not isinstance(size, bool) and size >= 0
    if not isinstance(digest, str) or not digest.startswith("sha256:") or not valid_size:
        raise EnvelopeRejected("malformed", "dataref without a valid datadigest/datasize", _safe(attrs))


def _safe(attrs: dict[str, Any]) -> dict[str, Any]:
    """The identifying attributes of a rejected envelope, as strings, for the audit record."""
    keep = ("id", "type", "agentid", "correlationid", "causationid", "traceparent", "schemaversion")
    return {k: str(attrs[k])[:200] for k in keep if k in attrs}
