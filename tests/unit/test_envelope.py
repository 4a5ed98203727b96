"""The wire envelope and the agent identity, checked against docs/protocol.md §1–4: making and signing
envelopes (round trip, the canonical form, what the signature covers, payloads by reference), the Kafka
headers, and the agent id and key.

What `parse` and the JSON Schema reject is in test_envelope_rules.py, the hypothesis tests are in
test_envelope_fuzz.py, and the builders they share in envelope_helpers.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from core.errors import ConfigError
from core.group.envelope import CONTENT_TYPE, ROSTER_ANNOUNCE, TASK_REQUEST, TASK_RESULT, Envelope, canonical, parse
from core.group.identity import Identity, PublicKey, agent_id_for, load_or_create
from core.secrets import SERVICE
from tests.fixtures.memory_keyring import MemoryKeyring
from tests.unit.envelope_helpers import (
    _BY_REFERENCE,
    _TAMPER_BASE,
    DIGEST,
    GROUP,
    REQUESTER,
    SENDER,
    SENDER_KEY,
    STRANGER_KEY,
    _encode,
    _envelope,
    _example_envelope,
    _examples,
    _signed,
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


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_sender_refuses_data_that_is_not_json(value: float) -> None:
    with pytest.raises(ValueError):
        _envelope(data={"taskid": "t1", "score": value})
