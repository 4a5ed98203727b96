"""The hypothesis tests: random bytes, random JSON and mutated envelopes fed to `parse`, which may only ever
return an Envelope or raise EnvelopeRejected; and any JSON data survives the wire with a valid signature.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.group.envelope import TASK_RESULT, Envelope, EnvelopeRejected, parse
from tests.unit.envelope_helpers import _BY_REFERENCE, _TAMPER_BASE, SENDER_KEY, STRANGER_KEY, _envelope

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


# --- the signed form cut out of the wire form is the canonical form without the signature --------------------


_finite_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)


@_FUZZ
@given(st.dictionaries(st.sampled_from(["signature", "text", "a", "z", "sig"]), _finite_json, max_size=5))
def test_signed_bytes_cut_from_the_wire_equal_the_canonical_form(data: dict[str, Any]) -> None:
    from core.group.envelope import canonical

    envelope = _envelope(data=data)  # nested "signature" keys may appear anywhere in the payload
    body = canonical({k: v for k, v in envelope.attrs.items() if k != "signature"})
    assert envelope.wire is not None and envelope.signed_bytes() == body
    parsed = parse(envelope.to_bytes())
    assert parsed.signed_bytes() == body and parsed.verify(SENDER_KEY)
    assert Envelope(envelope.attrs).signed_bytes() == body  # no wire form: computed
