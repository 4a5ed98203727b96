"""The wire envelope and the agent identity, checked against docs/protocol.md §1–4 and its JSON Schema.

The hypothesis tests feed random bytes, random JSON and mutated envelopes to `parse`: it may only ever
return an Envelope or raise EnvelopeRejected.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from core.errors import ConfigError
from core.group.envelope import (
    AUDIT_RECORD,
    CONTENT_TYPE,
    MAX_RECORD_BYTES,
    MEMORY_ITEM,
    ROSTER_ANNOUNCE,
    ROSTER_LEAVE,
    TASK_PROGRESS,
    TASK_REQUEST,
    TASK_RESULT,
    TRACE_SPAN,
    Envelope,
    EnvelopeRejected,
    canonical,
    make,
    parse,
)
from core.group.identity import Identity, PublicKey, agent_id_for, load_or_create
from core.secrets import SERVICE
from core.timeline.ids import TraceContext
from tests.fixtures.memory_keyring import MemoryKeyring

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "resources" / "schemas" / "envelope.schema.json"
GROUP = "crew"
ALL_TYPES = (
    ROSTER_ANNOUNCE,
    ROSTER_LEAVE,
    TASK_REQUEST,
    TASK_PROGRESS,
    TASK_RESULT,
    TRACE_SPAN,
    AUDIT_RECORD,
    MEMORY_ITEM,
)
# docs/protocol.md §2: the attributes marked "yes".
REQUIRED = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "dataschema",
    "group",
    "agentid",
    "correlationid",
    "traceparent",
    "schemaversion",
    "zone",
    "signature",
)

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


def _rejected(value: bytes | None) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as info:
        parse(value)
    return info.value


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


# --- round trip and signatures -------------------------------------------------------------------------------


def test_round_trip_keeps_every_attribute_and_verifies_only_with_the_senders_key() -> None:
    sent = _example_envelope(TASK_RESULT)
    received = parse(sent.to_bytes())
    assert received.attrs == sent.attrs
    assert received.verify(SENDER_KEY)
    assert not received.verify(STRANGER_KEY)
    assert (received.id, received.type, received.agentid, received.group) == (
        sent.id,
        TASK_RESULT,
        SENDER.agent_id,
        GROUP,
    )
    assert received.recipient == REQUESTER.agent_id
    assert received.attrs["source"] == f"shoal://{GROUP}/{SENDER.agent_id}"
    assert received.attrs["dataschema"] == f"urn:shoal:schema:{TASK_RESULT}:1"
    assert received.attrs["schemaversion"] == "1.0"
    assert received.trace.traceparent == sent.attrs["traceparent"]
    assert received.data == _examples()[TASK_RESULT]


def test_the_signature_is_the_documented_recipe() -> None:
    """protocol §3, byte for byte: a peer with only `json`, `base64` and Ed25519 computes the same value."""
    sent = _example_envelope(TASK_REQUEST)
    body = {k: v for k, v in sent.attrs.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert canonical(body) == text
    expected = base64.urlsafe_b64encode(SENDER.private_key.sign(text)).rstrip(b"=").decode()
    assert sent.attrs["signature"] == "ed25519:" + expected
    assert "🌊".encode() in sent.to_bytes()  # non-ASCII is not escaped


def _tampered(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {**value, "x": 1}
    return "x"


_TAMPER_BASE = _example_envelope(TASK_PROGRESS)
_BY_REFERENCE = _by_reference()


@pytest.mark.parametrize("name", sorted(set(_TAMPER_BASE.attrs) - {"signature"}))
def test_changing_any_attribute_breaks_the_signature(name: str) -> None:
    attrs = dict(_TAMPER_BASE.attrs)
    attrs[name] = _tampered(attrs[name])
    assert not Envelope(attrs).verify(SENDER_KEY)
    del attrs[name]
    assert not Envelope(attrs).verify(SENDER_KEY)


@pytest.mark.parametrize("name", ["dataref", "datadigest", "datasize"])
def test_the_signature_covers_the_payload_reference(name: str) -> None:
    assert _BY_REFERENCE.verify(SENDER_KEY)
    attrs = dict(_BY_REFERENCE.attrs)
    attrs[name] = _tampered(attrs[name])
    assert not Envelope(attrs).verify(SENDER_KEY)


@pytest.mark.parametrize("field", sorted(_TAMPER_BASE.attrs["data"]))
def test_changing_removing_or_adding_any_data_field_breaks_the_signature(field: str) -> None:
    data = dict(_TAMPER_BASE.attrs["data"])
    changed = {**_TAMPER_BASE.attrs, "data": {**data, field: _tampered(data[field])}}
    removed = {**_TAMPER_BASE.attrs, "data": {k: v for k, v in data.items() if k != field}}
    added = {**_TAMPER_BASE.attrs, "data": {**data, field + "2": data[field]}}
    for attrs in (changed, removed, added):
        assert not parse(_encode(attrs)).verify(SENDER_KEY)
    nested = {**_TAMPER_BASE.attrs, "data": {**data, "agent": {**data["agent"], "name": "mallory"}}}
    assert not parse(_encode(nested)).verify(SENDER_KEY)


def test_an_added_attribute_or_a_damaged_signature_breaks_verification() -> None:
    attrs = dict(_TAMPER_BASE.attrs)
    assert not Envelope({**attrs, "priority": "high"}).verify(SENDER_KEY)
    signature = attrs["signature"]
    flipped = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]
    for bad in (flipped, signature.replace("ed25519:", "ed448:"), signature[8:], "", "ed25519:", "ed25519:é"):
        assert not Envelope({**attrs, "signature": bad}).verify(SENDER_KEY)
    assert not Envelope({**attrs, "signature": 42}).verify(SENDER_KEY)


def test_the_signature_does_not_depend_on_key_order_or_whitespace() -> None:
    sent = _envelope(TASK_REQUEST, {"zeta": 1, "alpha": {"y": [{"b": 2, "a": 1}], "x": "ü"}, "taskid": "t"})
    reordered = {k: sent.attrs[k] for k in reversed(list(sent.attrs))}
    reordered["data"] = {"taskid": "t", "alpha": {"x": "ü", "y": [{"a": 1, "b": 2}]}, "zeta": 1}
    wire = json.dumps(reordered, indent=2, ensure_ascii=True).encode("ascii")
    received = parse(wire)
    assert list(received.attrs) != list(sent.attrs)
    assert received.verify(SENDER_KEY)
    assert canonical(received.attrs) == sent.to_bytes()


def test_a_newer_peers_unknown_attributes_and_fields_are_kept_and_still_verify() -> None:
    attrs = dict(_example_envelope(TASK_REQUEST).attrs)
    attrs["schemaversion"] = "1.7"
    attrs["priority"] = "high"
    attrs["budget"] = {"maxtokens": 4000, "tiers": ["a", "b"]}
    attrs["data"] = {**attrs["data"], "attachments": [{"name": "notes.md"}]}
    wire = _encode(_signed(attrs))
    received = parse(wire)
    assert received.attrs["priority"] == "high"
    assert received.attrs["budget"] == {"maxtokens": 4000, "tiers": ["a", "b"]}
    assert received.data["attachments"] == [{"name": "notes.md"}]
    assert received.verify(SENDER_KEY)
    # Why the whole object is kept: a reader that dropped what it does not know could not verify.
    known = {k: v for k, v in received.attrs.items() if k not in ("priority", "budget")}
    assert not Envelope(known).verify(SENDER_KEY)


@pytest.mark.parametrize("version", ["1.0", "1.7", "1.10", "1.9999"])
def test_any_minor_of_the_same_major_is_processed(version: str) -> None:
    attrs = _signed({**_TAMPER_BASE.attrs, "schemaversion": version})
    received = parse(_encode(attrs))
    assert received.verify(SENDER_KEY)


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.0", "3.1"])
def test_a_different_major_is_unsupported_version_and_keeps_identifying_attributes(version: str) -> None:
    attrs = _signed({**_TAMPER_BASE.attrs, "schemaversion": version, "data": {"whatever": ["shape"]}})
    error = _rejected(_encode(attrs))
    assert error.reason == "unsupported-version"
    assert error.attrs["id"] == attrs["id"]  # enough to audit the drop
    assert error.attrs["schemaversion"] == version


def test_another_cloudevents_specversion_is_not_processed() -> None:
    error = _rejected(_encode({**_TAMPER_BASE.attrs, "specversion": "2.0"}))
    assert error.reason in ("unsupported-version", "malformed")


@pytest.mark.parametrize(
    "name",
    [name for name in REQUIRED],
)
def test_a_missing_required_attribute_is_malformed(name: str) -> None:
    attrs = {k: v for k, v in _TAMPER_BASE.attrs.items() if k != name}
    signed = attrs if name == "signature" else _signed(attrs)
    assert _rejected(_encode(signed)).reason == "malformed"


@pytest.mark.parametrize("name", ["id", "type", "agentid", "correlationid", "traceparent", "schemaversion"])
@pytest.mark.parametrize("value", [None, 7, "", ["x"], {"a": "b"}])
def test_a_required_attribute_of_the_wrong_type_is_malformed(name: str, value: Any) -> None:
    attrs = {**_TAMPER_BASE.attrs, name: value}
    assert _rejected(_encode(attrs)).reason == "malformed"


@pytest.mark.parametrize(
    "traceparent", ["", "00-abc-def-01", "00-" + "g" * 32 + "-" + "0" * 15 + "1-01", "not a traceparent"]
)
def test_a_bad_traceparent_is_malformed(traceparent: str) -> None:
    assert _rejected(_encode({**_TAMPER_BASE.attrs, "traceparent": traceparent})).reason == "malformed"


def test_data_that_is_not_an_object_or_no_payload_at_all_is_malformed() -> None:
    for data in ([1, 2], "text", 3, None):
        assert _rejected(_encode({**_TAMPER_BASE.attrs, "data": data})).reason == "malformed"
    without = {k: v for k, v in _TAMPER_BASE.attrs.items() if k != "data"}
    assert _rejected(_encode(without)).reason == "malformed"


def _padded_to(size: int) -> bytes:
    attrs = dict(_TAMPER_BASE.attrs)
    attrs["data"] = {**attrs["data"], "padding": ""}
    base = len(_encode(attrs))
    attrs["data"]["padding"] = "x" * (size - base)
    wire = _encode(attrs)
    assert len(wire) == size
    return wire


def test_more_than_one_mib_is_too_large_and_exactly_one_mib_is_not() -> None:
    assert _rejected(_padded_to(MAX_RECORD_BYTES + 1)).reason == "too-large"
    assert parse(_padded_to(MAX_RECORD_BYTES)).data["padding"].startswith("x")
    huge = _envelope(TASK_RESULT, {"taskid": "t", "status": "ok", "output": "ü" * MAX_RECORD_BYTES})
    assert _rejected(huge.to_bytes()).reason == "too-large"


@pytest.mark.parametrize(
    "value",
    [
        None,  # a tombstone
        b"",
        b"   ",
        b"{",
        b"[]",
        b'"an envelope"',
        b"42",
        b"null",
        b"true",
        b"\xff\xfe\xfd",
        b'{"id": "\xc3\x28"}',
        b"\x00" * 10,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
    ids=lambda v: repr(v)[:30],
)
def test_what_is_not_a_json_object_is_malformed(value: bytes | None) -> None:
    assert _rejected(value).reason == "malformed"


def test_invalid_utf8_inside_a_valid_envelope_is_malformed() -> None:
    wire = _TAMPER_BASE.to_bytes().replace(b"reading files", b"reading \xe9 files")
    assert _rejected(wire).reason == "malformed"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_record_in_another_unicode_encoding_is_malformed(encoding: str) -> None:
    wire = json.dumps(_TAMPER_BASE.attrs).encode(encoding)
    assert _rejected(wire).reason == "malformed"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_tokens_are_malformed(token: str) -> None:
    wire = _TAMPER_BASE.to_bytes()[:-1] + f',"weight":{token}}}'.encode()
    assert _rejected(wire).reason == "malformed"


def test_a_lone_surrogate_escape_is_rejected_or_fails_verification_without_raising() -> None:
    wire = _TAMPER_BASE.to_bytes().replace(b"reading files", b"reading \\ud800 files")
    try:
        received = parse(wire)
    except EnvelopeRejected as exc:
        assert exc.reason == "malformed"
        return
    assert received.verify(SENDER_KEY) is False


_HEX32, _HEX16 = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-" + "\u0661" * 32 + "-" + _HEX16 + "-01",  # ARABIC-INDIC DIGIT ONE
        "00-+" + _HEX32[1:] + "-" + _HEX16 + "-01",
        "00-" + _HEX32[:10] + "_" + _HEX32[11:] + "-" + _HEX16 + "-01",
        " 00-" + _HEX32 + "-" + _HEX16 + "-01\n",
        "zz-" + _HEX32 + "-" + _HEX16 + "-zz",
    ],
    ids=["unicode-digits", "plus-sign", "underscore", "whitespace", "bad-version-and-flags"],
)
def test_a_traceparent_that_is_not_lowercase_hex_is_malformed(traceparent: str) -> None:
    assert _rejected(_encode({**_TAMPER_BASE.attrs, "traceparent": traceparent})).reason == "malformed"


def test_headers_of_any_parsed_envelope_do_not_raise() -> None:
    traceparent = "00-" + "\u0661" * 32 + "-" + _HEX16 + "-01"
    try:
        received = parse(_encode({**_TAMPER_BASE.attrs, "traceparent": traceparent}))
    except EnvelopeRejected as exc:
        assert exc.reason == "malformed"
        return
    received.headers()


@pytest.mark.parametrize("version", ["1.0\n", "\u0661.\u0660"], ids=["trailing-newline", "unicode-digits"])
def test_a_schemaversion_that_is_not_ascii_major_minor_is_malformed(version: str) -> None:
    assert _rejected(_encode(_signed({**_TAMPER_BASE.attrs, "schemaversion": version}))).reason == "malformed"


# --- payload by reference ------------------------------------------------------------------------------------


def test_a_by_reference_envelope_round_trips_without_data() -> None:
    received = parse(_BY_REFERENCE.to_bytes())
    assert received.by_reference
    assert "data" not in received.attrs
    assert received.data == {}
    assert (received.attrs["datadigest"], received.attrs["datasize"]) == (DIGEST, 300_000)
    assert received.verify(SENDER_KEY)
    resolved = received.with_data({"taskid": "t1", "status": "ok", "output": "long"})
    assert resolved.data["output"] == "long"
    assert resolved.verify(SENDER_KEY) is False  # the fetched payload is checked by digest, not by signature


@pytest.mark.parametrize(
    "change",
    [
        {"datadigest": None},
        {"datasize": None},
        {"datadigest": None, "datasize": None},
        {"datadigest": "md5:abc"},
        {"datadigest": 5},
        {"datasize": -1},
        {"datasize": "300000"},
        {"datasize": 1.5},
    ],
    ids=repr,
)
def test_a_dataref_without_a_valid_digest_and_size_is_malformed(change: dict[str, Any]) -> None:
    attrs = dict(_BY_REFERENCE.attrs)
    for name, value in change.items():
        if value is None:
            del attrs[name]
        else:
            attrs[name] = value
    assert _rejected(_encode(_signed(attrs))).reason == "malformed"


def test_a_boolean_datasize_is_malformed() -> None:
    attrs = _signed({**_BY_REFERENCE.attrs, "datasize": True})
    assert _rejected(_encode(attrs)).reason == "malformed"


# --- Kafka headers -------------------------------------------------------------------------------------------


def test_headers_follow_the_cloudevents_kafka_binding() -> None:
    sent = _example_envelope(TASK_RESULT)
    headers = dict(sent.headers())
    assert len(headers) == len(sent.headers())  # no duplicates
    assert headers["content-type"] == CONTENT_TYPE.encode() == b"application/cloudevents+json; charset=UTF-8"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == sent.id.encode()
    assert headers["ce_type"] == TASK_RESULT.encode()
    assert headers["ce_source"] == f"shoal://{GROUP}/{SENDER.agent_id}".encode()
    assert headers["ce_time"] == sent.attrs["time"].encode()
    assert headers["ce_agentid"] == SENDER.agent_id.encode()
    assert headers["ce_correlationid"] == sent.correlationid.encode()
    assert headers["ce_zone"] == b"public"
    assert headers["ce_recipient"] == REQUESTER.agent_id.encode()
    assert headers["traceparent"] == sent.attrs["traceparent"].encode()
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in sent.headers())


def test_headers_leave_out_an_unset_recipient() -> None:
    headers = dict(_example_envelope(ROSTER_ANNOUNCE).headers())
    assert "ce_recipient" not in headers
    assert {"content-type", "ce_id", "ce_type", "ce_source", "traceparent"} <= set(headers)


# --- the JSON Schema -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(validator: Draft202012Validator, attrs: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(attrs)]


def test_the_schema_has_a_data_definition_per_event_type() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(ALL_TYPES) <= set(schema["$defs"])
    for event_type in ALL_TYPES:
        assert schema["$defs"][event_type]["additionalProperties"] is True


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_event_type_made_by_make_validates(validator: Draft202012Validator, event_type: str) -> None:
    sent = _example_envelope(event_type)
    assert _errors(validator, sent.attrs) == []
    assert _errors(validator, parse(sent.to_bytes()).attrs) == []


def test_a_by_reference_envelope_and_a_newer_peers_extras_validate(validator: Draft202012Validator) -> None:
    assert _errors(validator, _BY_REFERENCE.attrs) == []
    newer = {**_TAMPER_BASE.attrs, "schemaversion": "1.7", "priority": "high"}
    newer["data"] = {**newer["data"], "futurefield": [1, 2]}
    assert _errors(validator, newer) == []
    failed = {**_examples()[TASK_RESULT], "status": "refused", "error": {"code": "depth", "message": "too deep"}}
    failed.pop("output")
    assert _errors(validator, _envelope(TASK_RESULT, failed, recipient=REQUESTER.agent_id).attrs) == []


def _without(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in names}


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        (TASK_REQUEST, _without(_examples()[TASK_REQUEST], "deadline")),
        (TASK_REQUEST, {**_examples()[TASK_REQUEST], "depth": "0"}),
        (TASK_PROGRESS, _without(_examples()[TASK_PROGRESS], "state")),
        (TASK_PROGRESS, {**_examples()[TASK_PROGRESS], "state": "thinking"}),
        (TASK_RESULT, {"taskid": "t", "status": "error"}),  # error is present unless status is ok
        (TASK_RESULT, {"taskid": "t", "status": "maybe"}),
        (ROSTER_ANNOUNCE, _without(_examples()[ROSTER_ANNOUNCE], "publickey")),
        (ROSTER_ANNOUNCE, {**_examples()[ROSTER_ANNOUNCE], "publickey": "not base64"}),
        (ROSTER_LEAVE, {"reason": "quit"}),
        (TRACE_SPAN, _without(_examples()[TRACE_SPAN], "spanid")),
        (AUDIT_RECORD, {"records": [{"action": "teleported", "at": "2026-11-21T10:00:00Z"}]}),
        (AUDIT_RECORD, {"records": [{"action": "dropped", "at": "2026-11-21T10:00:00Z"}]}),
        (MEMORY_ITEM, {"itemid": "m1"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_data_missing_or_breaking_what_its_type_requires_fails(
    validator: Draft202012Validator, event_type: str, data: dict[str, Any]
) -> None:
    sent = _envelope(event_type, data, recipient=REQUESTER.agent_id)
    assert _errors(validator, sent.attrs)


@pytest.mark.parametrize(
    "change",
    [
        {"agentid": "not-an-agent-id"},
        {"agentid": SENDER.agent_id.upper()},
        {"agentid": SENDER.agent_id + "00"},
        {"recipient": "bob"},
        {"traceparent": "00-abc-def-01"},
        {"schemaversion": "2.0"},
        {"schemaversion": "1"},
        {"zone": "secret"},
        {"specversion": "0.3"},
        {"datacontenttype": "text/plain"},
        {"dataschema": "urn:shoal:schema:shoal.task.request:1"},  # the type says task.progress
        {"signature": "rsa:abc"},
        {"source": "https://example.com/agent"},
        {"time": "yesterday"},
        {"dataref": "file:///x"},  # both data and dataref, and no digest/size
        {"dataref": "file:///x", "datadigest": DIGEST, "datasize": 7},  # data and dataref: one or the other
        {"Priority": "high"},  # CloudEvents attribute names are lowercase letters and digits
        {"id": None},
        {"zone": None},
        {"signature": None},
        {"data": None},
    ],
    ids=repr,
)
def test_invalid_envelopes_fail_the_schema(validator: Draft202012Validator, change: dict[str, Any]) -> None:
    attrs = dict(_TAMPER_BASE.attrs)
    for name, value in change.items():
        if value is None:
            del attrs[name]
        else:
            attrs[name] = value
    assert _errors(validator, attrs)


def test_a_bad_datadigest_fails_the_schema(validator: Draft202012Validator) -> None:
    for digest in ("sha256:abc", "md5:" + "0" * 64, DIGEST.upper()):
        assert _errors(validator, {**_BY_REFERENCE.attrs, "datadigest": digest})
    assert _errors(validator, _without(_BY_REFERENCE.attrs, "datasize"))


# --- parse never raises anything but EnvelopeRejected --------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_reject(value: bytes | None) -> Envelope | None:
    try:
        return parse(value)
    except EnvelopeRejected as exc:
        assert exc.reason in ("malformed", "too-large", "unsupported-version")
        return None


@_FUZZ
@given(st.binary(max_size=2048))
def test_parse_of_arbitrary_bytes_only_rejects(value: bytes) -> None:
    _parse_or_reject(value)


@_FUZZ
@given(_json_values)
def test_parse_of_arbitrary_json_only_rejects(value: Any) -> None:
    _parse_or_reject(json.dumps(value).encode("utf-8"))


_ATTRIBUTE_NAMES = st.sampled_from([*sorted(_TAMPER_BASE.attrs), *sorted(_BY_REFERENCE.attrs), "datasize", "extra"])
_mutation = st.tuples(st.sampled_from(["delete", "replace", "replace-data"]), _ATTRIBUTE_NAMES, _json_values)


@_FUZZ
@given(st.sampled_from([_TAMPER_BASE, _BY_REFERENCE]), st.lists(_mutation, min_size=1, max_size=4), st.booleans())
def test_parse_of_mutated_envelopes_only_rejects(
    base: Envelope, mutations: list[tuple[str, str, Any]], ascii_only: bool
) -> None:
    attrs = json.loads(json.dumps(base.attrs))
    for action, name, value in mutations:
        if action == "delete":
            attrs.pop(name, None)
        elif action == "replace":
            attrs[name] = value
        elif isinstance(attrs.get("data"), dict):
            attrs["data"][name] = value
    received = _parse_or_reject(json.dumps(attrs, ensure_ascii=ascii_only).encode("utf-8"))
    if received is not None:  # whatever parse accepts, the receiver can go on with
        assert received.verify(SENDER_KEY) in (True, False)
        received.headers()
        received.summary("group.crew.requests")
        assert isinstance(received.data, dict)
        assert received.trace.trace_id


_json_data = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | st.text(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    ),
    max_size=6,
)


@_FUZZ
@given(_json_data)
def test_any_json_data_survives_the_wire_with_a_valid_signature(data: dict[str, Any]) -> None:
    sent = _envelope(TASK_RESULT, data)
    received = parse(sent.to_bytes())
    assert received.data == data
    assert received.verify(SENDER_KEY)
    assert not received.verify(STRANGER_KEY)


# --- identity ------------------------------------------------------------------------------------------------


def test_the_agent_id_is_the_first_24_hex_of_the_sha256_of_the_raw_public_key() -> None:
    identity = Identity.generate()
    raw = identity.public_raw
    assert len(raw) == 32
    assert base64.b64decode(identity.public_b64, validate=True) == raw
    assert identity.agent_id == hashlib.sha256(raw).hexdigest()[:24] == agent_id_for(raw)
    assert len(identity.agent_id) == 24
    assert identity.agent_id == identity.agent_id.lower()
    key = PublicKey(identity.public_b64)
    assert (key.raw, key.agent_id) == (raw, identity.agent_id)
    assert Identity.generate().agent_id != identity.agent_id


def test_a_known_key_gives_the_documented_agent_id() -> None:
    raw = bytes(range(32))
    assert agent_id_for(raw) == hashlib.sha256(raw).hexdigest()[:24] == "630dcd2966c4336691125448"


def test_an_identity_survives_its_private_key_export() -> None:
    identity = Identity.generate()
    again = Identity.from_private_b64(identity.private_b64())
    assert again.agent_id == identity.agent_id
    message = b"the same bytes"
    assert PublicKey(identity.public_b64).verify(again.sign(message), message)


_PUBLIC = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.b64encode(bytes(64)).decode(),
        "not base64 at all!",
        _PUBLIC.rstrip("="),  # the protocol sends padding
        _PUBLIC[:10] + " " + _PUBLIC[10:],
        _PUBLIC[:10] + "$" + _PUBLIC[11:],
        base64.urlsafe_b64encode(bytes([0xFB]) * 32).decode(),  # base64url, not standard base64
    ],
)
def test_a_public_key_must_be_standard_base64_of_32_bytes(text: str) -> None:
    with pytest.raises(ValueError):
        PublicKey(text)


def test_load_or_create_stores_once_per_group() -> None:
    first = load_or_create("alpha")
    assert list(MemoryKeyring.store) == [(SERVICE, "group-identity:alpha")]
    stored = MemoryKeyring.store[(SERVICE, "group-identity:alpha")]
    second = load_or_create("alpha")
    assert second.agent_id == first.agent_id
    assert MemoryKeyring.store[(SERVICE, "group-identity:alpha")] == stored
    other = load_or_create("beta")
    assert other.agent_id != first.agent_id
    assert len(MemoryKeyring.store) == 2


@pytest.mark.parametrize("stored", ["garbage", base64.b64encode(bytes(7)).decode()])
def test_a_damaged_stored_identity_is_a_config_error(stored: str) -> None:
    MemoryKeyring.store[(SERVICE, "group-identity:alpha")] = stored
    with pytest.raises(ConfigError):
        load_or_create("alpha")
