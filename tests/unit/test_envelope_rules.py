"""The rules for a valid envelope (docs/protocol.md §2–4): what `parse` accepts, what it rejects and why
(malformed, too-large, unsupported-version), including envelopes that carry their payload by reference; and
the same rules as the JSON Schema states them (resources/schemas/envelope.schema.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.group.envelope import (
    AUDIT_RECORD,
    MAX_RECORD_BYTES,
    MEMORY_ITEM,
    ROSTER_ANNOUNCE,
    ROSTER_LEAVE,
    TASK_PROGRESS,
    TASK_REQUEST,
    TASK_RESULT,
    TRACE_SPAN,
    EnvelopeRejected,
    parse,
)
from tests.unit.envelope_helpers import (
    _BY_REFERENCE,
    _TAMPER_BASE,
    DIGEST,
    REQUESTER,
    SENDER,
    SENDER_KEY,
    _encode,
    _envelope,
    _example_envelope,
    _examples,
    _signed,
)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "resources" / "schemas" / "envelope.schema.json"
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


def _rejected(value: bytes | None) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as info:
        parse(value)
    return info.value


# --- reading rules ------------------------------------------------------------------------------------------


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


# --- payload by reference: a malformed reference -------------------------------------------------------------


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
