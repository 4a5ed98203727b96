"""The hypothesis tests of core/group/zonecrypt.py: whatever is fed to `open_sealed` (random JSON, mutated and
truncated sealed payloads) it only ever raises ZoneSealError with one of its reasons, never opens a changed
payload to anything but the original, and any JSON object survives seal and open.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.group.zonecrypt import REASONS, BoxKey, ZoneSealError, aad_for, open_sealed, seal

_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AAD = aad_for({"id": "e1", "type": "shoal.memory.item", "zone": "family", "agentid": "sender", "group": "crew"})
DATA = {"kind": "note", "text": "the spare key is under the blue pot"}
MEMBER = BoxKey.generate()
SEALED = seal(DATA, recipients={"member": MEMBER.public_b64, "other": BoxKey.generate().public_b64}, aad=AAD)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))  # what JSON from the wire can hold


def _open_or_reason(sealed: Any) -> dict[str, Any] | str:
    try:
        return open_sealed(sealed, agentid="member", key=MEMBER, aad=AAD)
    except ZoneSealError as exc:
        assert exc.reason in REASONS
        return exc.reason


@_FUZZ
@given(_json_values)
def test_arbitrary_json_is_only_refused(value: Any) -> None:
    assert _open_or_reason(value) == "malformed"


_FIELDS = ["alg", "epk", "nonce", "ciphertext", "recipients", "0.agentid", "0.nonce", "0.wrapped", "1.wrapped"]
_mutation = st.tuples(st.sampled_from(["delete", "replace", "text"]), st.sampled_from(_FIELDS), _json_values, _text)


def _mutate(sealed: dict[str, Any], action: str, name: str, value: Any, text: str) -> None:
    holder: Any = sealed
    if "." in name:
        index, name = name.split(".")
        if not isinstance(sealed.get("recipients"), list) or len(sealed["recipients"]) <= int(index):
            return
        holder = sealed["recipients"][int(index)]
        if not isinstance(holder, dict):
            return
    if action == "delete":
        holder.pop(name, None)
    else:
        holder[name] = value if action == "replace" else text


@_FUZZ
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_payloads_are_refused_or_open_to_the_original(mutations: list[tuple[str, str, Any, str]]) -> None:
    sealed = json.loads(json.dumps(SEALED))
    for mutation in mutations:
        _mutate(sealed, *mutation)
    result = _open_or_reason(sealed)
    assert result in REASONS or result == DATA
    if result == DATA:  # only changes to another member's entry can leave it openable
        assert {k: sealed[k] for k in ("alg", "epk", "nonce", "ciphertext")} == {
            k: SEALED[k] for k in ("alg", "epk", "nonce", "ciphertext")
        }


@pytest.mark.parametrize("field", ["epk", "nonce", "ciphertext", "0.nonce", "0.wrapped"])
@_FUZZ
@given(cut=st.integers(min_value=0), extra=st.sampled_from(["", "A", "AA", "AAA", "-_"]))
def test_truncated_or_extended_values_never_open(field: str, cut: int, extra: str) -> None:
    sealed = json.loads(json.dumps(SEALED))
    holder = sealed["recipients"][0] if field.startswith("0.") else sealed
    name = field.removeprefix("0.")
    original = holder[name]
    holder[name] = original[: cut % len(original)] + extra
    if holder[name] == original:
        return
    assert _open_or_reason(sealed) in ("malformed", "tampered")


_json_data = st.dictionaries(
    _text,
    st.recursive(
        st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | _text,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
        max_leaves=20,
    ),
    max_size=6,
)


@_FUZZ
@given(_json_data)
def test_any_json_object_survives_seal_and_open(data: dict[str, Any]) -> None:
    sealed = seal(data, recipients={"member": MEMBER.public_b64}, aad=AAD)
    assert open_sealed(json.loads(json.dumps(sealed)), agentid="member", key=MEMBER, aad=AAD) == data
