"""End-to-end encryption of private zones (core/group/zonecrypt.py, docs/zones-crypto.md): members open what
was sealed for them, outsiders and changed bytes are refused with the right reason, the ciphertext leaks no
plaintext, an implementation written from the document alone interoperates, and the zone key is kept in the
keyring like the identity.

The hypothesis tests (anything fed to `open_sealed` only ever raises ZoneSealError) are in
test_zonecrypt_fuzz.py.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.group.envelope import canonical
from core.group.identity import load_or_create
from core.group.zonecrypt import (
    AAD_ATTRIBUTES,
    ALG,
    BoxKey,
    ZoneSealError,
    aad_for,
    load_or_create_box_key,
    open_sealed,
    seal,
)
from core.secrets import SERVICE
from tests.fixtures.memory_keyring import MemoryKeyring

ATTRS = {"id": "0190f3a2b4c5d6e7f8091a2b3c4d5e6f", "type": "shoal.task.request", "zone": "finance",
         "agentid": "a1b2c3d4e5f60718293a4b5c", "group": "crew"}  # fmt: skip
AAD = aad_for(ATTRS)
DATA = {"taskid": "t-1", "skill": "ledger", "input": {"text": "pay Kowalczyk 1200 zł by Friday"}, "depth": 0}
SECRET = "the-merger-with-hooli-closes-on-may-3rd"


def _members(count: int) -> dict[str, BoxKey]:
    return {f"agent{index:02d}": BoxKey.generate() for index in range(count)}


def _recipients(members: dict[str, BoxKey]) -> dict[str, str]:
    return {agentid: key.public_b64 for agentid, key in members.items()}


def _reason(sealed: Any, agentid: str, key: BoxKey, aad: bytes = AAD) -> str:
    with pytest.raises(ZoneSealError) as caught:
        open_sealed(sealed, agentid=agentid, key=key, aad=aad)
    return caught.value.reason


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- round trip ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 5])
def test_every_member_opens_what_was_sealed_for_the_zone(count: int) -> None:
    members = _members(count)
    sealed = seal(DATA, recipients=_recipients(members), aad=AAD)
    for agentid, key in members.items():
        assert open_sealed(sealed, agentid=agentid, key=key, aad=AAD) == DATA
    assert [entry["agentid"] for entry in sealed["recipients"]] == sorted(members)


def test_the_sealed_form_is_plain_json_of_strings() -> None:
    sealed = seal(DATA, recipients=_recipients(_members(3)), aad=AAD)
    assert set(sealed) == {"alg", "epk", "nonce", "ciphertext", "recipients"} and sealed["alg"] == ALG
    assert json.loads(canonical(sealed)) == sealed  # survives the envelope's canonical JSON unchanged
    assert len(_unb64url(sealed["epk"])) == 32 and len(_unb64url(sealed["nonce"])) == 12
    for entry in sealed["recipients"]:
        assert set(entry) == {"agentid", "nonce", "wrapped"}
        assert len(_unb64url(entry["nonce"])) == 12 and len(_unb64url(entry["wrapped"])) == 48
    assert len(_unb64url(sealed["ciphertext"])) == len(canonical(DATA)) + 16
    text = json.dumps(sealed)
    assert "=" not in text and "+" not in text and "/" not in text  # base64url without padding


def test_each_seal_uses_fresh_keys_and_nonces() -> None:
    recipients = _recipients(_members(2))
    first, second = seal(DATA, recipients=recipients, aad=AAD), seal(DATA, recipients=recipients, aad=AAD)
    for name in ("epk", "nonce", "ciphertext"):
        assert first[name] != second[name]
    assert first["recipients"][0]["wrapped"] != second["recipients"][0]["wrapped"]


def test_the_ciphertext_contains_no_plaintext() -> None:
    data = {"note": SECRET * 4, "amount": 1200}
    sealed = seal(data, recipients=_recipients(_members(2)), aad=AAD)
    text = json.dumps(sealed)
    plaintext = canonical(data)
    for encoded in (SECRET, base64.b64encode(SECRET.encode()).decode()[:24], _b64url(SECRET.encode())[:24]):
        assert encoded not in text
    ciphertext = _unb64url(sealed["ciphertext"])
    assert not any(plaintext[start : start + 6] in ciphertext for start in range(len(plaintext) - 5))


# --- who can open it ------------------------------------------------------------------------------------------


def test_an_outsider_is_not_a_recipient() -> None:
    members = _members(3)
    sealed = seal(DATA, recipients=_recipients(members), aad=AAD)
    assert _reason(sealed, "outsider", BoxKey.generate()) == "not-a-recipient"


def test_an_outsider_claiming_a_members_id_cannot_open_it() -> None:
    sealed = seal(DATA, recipients=_recipients(_members(2)), aad=AAD)
    assert _reason(sealed, "agent00", BoxKey.generate()) == "tampered"


def test_swapped_wrapped_entries_open_for_nobody() -> None:
    members = _members(3)
    sealed = seal(DATA, recipients=_recipients(members), aad=AAD)
    first, second = sealed["recipients"][0], sealed["recipients"][1]
    first["nonce"], second["nonce"] = second["nonce"], first["nonce"]
    first["wrapped"], second["wrapped"] = second["wrapped"], first["wrapped"]
    assert _reason(sealed, first["agentid"], members[first["agentid"]]) == "tampered"
    assert _reason(sealed, second["agentid"], members[second["agentid"]]) == "tampered"
    third = sealed["recipients"][2]["agentid"]
    assert open_sealed(sealed, agentid=third, key=members[third], aad=AAD) == DATA  # untouched entry


def test_an_entry_relabelled_with_another_members_id_does_not_open() -> None:
    members = _members(2)
    sealed = seal(DATA, recipients=_recipients(members), aad=AAD)
    sealed["recipients"] = [{**sealed["recipients"][1], "agentid": "agent00"}]  # agent01's key, agent00's name
    assert _reason(sealed, "agent00", members["agent00"]) == "tampered"
    assert _reason(sealed, "agent01", members["agent01"]) == "not-a-recipient"


# --- changed bytes and another envelope ------------------------------------------------------------------------


def _flip_each_bit(text: str) -> list[str]:
    raw = _unb64url(text)
    flipped = []
    for bit in range(len(raw) * 8):
        changed = bytearray(raw)
        changed[bit // 8] ^= 1 << bit % 8
        flipped.append(_b64url(bytes(changed)))
    return flipped


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "epk", "recipients.nonce", "recipients.wrapped"])
def test_any_flipped_bit_is_tampering(field: str) -> None:
    members = _members(2)
    sealed = seal({"n": 7, "text": "short"}, recipients=_recipients(members), aad=AAD)
    holder, name = (sealed["recipients"][0], field.split(".")[1]) if "." in field else (sealed, field)
    variants = _flip_each_bit(holder[name])
    assert len(variants) == 8 * len(_unb64url(holder[name]))
    for variant in variants:
        changed = json.loads(json.dumps(sealed))
        target = changed["recipients"][0] if "." in field else changed
        target[name] = variant
        assert _reason(changed, "agent00", members["agent00"]) == "tampered", (field, variant)


def test_the_bit_x25519_ignores_in_epk_still_counts() -> None:
    """X25519 masks the top bit of a public key, so the shared secret survives that flip; the HKDF salt (the
    epk bytes as sent) does not, so the change is still caught."""
    members = _members(1)
    sealed = seal(DATA, recipients=_recipients(members), aad=AAD)
    epk = bytearray(_unb64url(sealed["epk"]))
    epk[31] ^= 0x80
    assert _reason({**sealed, "epk": _b64url(bytes(epk))}, "agent00", members["agent00"]) == "tampered"


@pytest.mark.parametrize("attribute", AAD_ATTRIBUTES)
def test_a_ciphertext_moved_into_another_envelope_does_not_open(attribute: str) -> None:
    members = _members(2)
    sealed = seal(DATA, recipients=_recipients(members), aad=AAD)
    moved = aad_for({**ATTRS, attribute: ATTRS[attribute] + "x"})
    assert _reason(sealed, "agent01", members["agent01"], aad=moved) == "tampered"
    assert _reason(sealed, "agent01", members["agent01"], aad=b"") == "tampered"


def test_the_aad_is_the_compact_json_array_of_the_identity() -> None:
    expected = b'["0190f3a2b4c5d6e7f8091a2b3c4d5e6f","shoal.task.request","finance","a1b2c3d4e5f60718293a4b5c","crew"]'
    assert expected == AAD
    # a plain join with "," would make these two identities one
    assert aad_for({**ATTRS, "id": "a,b", "type": "t"}) != aad_for({**ATTRS, "id": "a", "type": "b,t"})
    assert aad_for({**ATTRS, "zone": "zürich"}).decode("utf-8").count("zürich") == 1  # UTF-8, not \u escapes
    with pytest.raises(TypeError):
        aad_for({**ATTRS, "zone": None})


# --- what seal refuses and what open calls malformed ------------------------------------------------------------


@pytest.mark.parametrize(
    "recipients",
    [
        {},
        {"agent00": base64.b64encode(bytes(31)).decode()},
        {"agent00": "not base64!"},
        {"agent00": base64.b64encode(bytes(32)).decode()},  # a low-order point: no shared secret
        {"": BoxKey.generate().public_b64},
    ],
)
def test_seal_refuses_recipients_it_cannot_seal_for(recipients: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        seal(DATA, recipients=recipients, aad=AAD)


def test_seal_refuses_data_that_is_not_json() -> None:
    with pytest.raises(ValueError):
        seal({"x": float("nan")}, recipients=_recipients(_members(1)), aad=AAD)


_MEMBER = BoxKey.generate()
_GOOD = seal(DATA, recipients={"agent00": _MEMBER.public_b64, "agent01": BoxKey.generate().public_b64}, aad=AAD)
_ENTRY = _GOOD["recipients"][0]


@pytest.mark.parametrize(
    "sealed",
    [
        None, [], "sealed", {},
        {**_GOOD, "alg": "x25519-hkdf-sha256-aes256gcm"},
        {k: v for k, v in _GOOD.items() if k != "alg"},
        {**_GOOD, "epk": _GOOD["epk"] + "="},
        {**_GOOD, "epk": _GOOD["epk"][:-1]},
        {**_GOOD, "epk": "+" + _GOOD["epk"][1:]},
        {**_GOOD, "epk": _b64url(bytes(32))},  # low-order point
        {**_GOOD, "epk": 12345},
        {**_GOOD, "nonce": _b64url(bytes(11))},
        {**_GOOD, "nonce": _GOOD["nonce"][:-1]},  # 15 characters: 11 bytes
        {**_GOOD, "ciphertext": _b64url(bytes(15))},
        {**_GOOD, "ciphertext": ""},
        {**_GOOD, "ciphertext": _b64url(bytes(16))[:-1] + "B"},  # trailing bits set: not the canonical spelling
        {**_GOOD, "ciphertext": _GOOD["ciphertext"][:1]},  # one character: no whole byte
        {**_GOOD, "recipients": []},
        {**_GOOD, "recipients": {"agent00": _ENTRY}},
        {**_GOOD, "recipients": [_ENTRY, "agent01"]},
        {**_GOOD, "recipients": [_ENTRY, _ENTRY]},
        {**_GOOD, "recipients": [{**_ENTRY, "agentid": ""}]},
        {**_GOOD, "recipients": [{**_ENTRY, "agentid": 7}]},
        {**_GOOD, "recipients": [{k: v for k, v in _ENTRY.items() if k != "wrapped"}]},
        {**_GOOD, "recipients": [{**_ENTRY, "wrapped": _ENTRY["wrapped"][:-2]}]},
        {**_GOOD, "recipients": [{**_ENTRY, "nonce": [_ENTRY["nonce"]]}]},
        {**_GOOD, "recipients": [{**_ENTRY, "wrapped": " " + _ENTRY["wrapped"]}]},
    ],
)  # fmt: skip
def test_anything_not_well_formed_is_malformed(sealed: Any) -> None:
    assert _reason(sealed, "agent00", _MEMBER) == "malformed"


def test_unknown_fields_are_ignored() -> None:
    sealed = {**_GOOD, "kid": "v2", "recipients": [{**entry, "hint": 1} for entry in _GOOD["recipients"]]}
    assert open_sealed(sealed, agentid="agent00", key=_MEMBER, aad=AAD) == DATA


# --- an implementation written from docs/zones-crypto.md alone -------------------------------------------------


def _peer_seal(plaintext: bytes, recipients: dict[str, bytes], aad: bytes) -> dict[str, Any]:
    """Sealing as a kafka-python peer would, with `cryptography` alone (no Shoal code)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    cek, nonce = os.urandom(32), os.urandom(12)
    eph = X25519PrivateKey.generate()
    epk = eph.public_key().public_bytes_raw()
    entries = []
    for agentid, public in sorted(recipients.items()):
        shared = eph.exchange(X25519PublicKey.from_public_bytes(public))
        kek = HKDF(hashes.SHA256(), 32, salt=epk, info=b"shoal-zone-v1" + agentid.encode()).derive(shared)
        wrap_nonce = os.urandom(12)
        wrapped = ChaCha20Poly1305(kek).encrypt(wrap_nonce, cek, aad)
        entries.append({"agentid": agentid, "nonce": _b64url(wrap_nonce), "wrapped": _b64url(wrapped)})
    ciphertext = ChaCha20Poly1305(cek).encrypt(nonce, plaintext, aad)
    return {"alg": ALG, "epk": _b64url(epk), "nonce": _b64url(nonce), "ciphertext": _b64url(ciphertext),
            "recipients": entries}  # fmt: skip


def _peer_open(sealed: dict[str, Any], agentid: str, private: bytes, aad: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    entry = next(entry for entry in sealed["recipients"] if entry["agentid"] == agentid)
    epk = _unb64url(sealed["epk"])
    shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(epk))
    kek = HKDF(hashes.SHA256(), 32, salt=epk, info=b"shoal-zone-v1" + agentid.encode()).derive(shared)
    cek = ChaCha20Poly1305(kek).decrypt(_unb64url(entry["nonce"]), _unb64url(entry["wrapped"]), aad)
    return ChaCha20Poly1305(cek).decrypt(_unb64url(sealed["nonce"]), _unb64url(sealed["ciphertext"]), aad)


def test_an_independent_implementation_interoperates() -> None:
    members = _members(2)
    raw_public = {agentid: key.public_raw for agentid, key in members.items()}
    from_peer = _peer_seal(canonical(DATA), raw_public, AAD)
    assert open_sealed(from_peer, agentid="agent01", key=members["agent01"], aad=AAD) == DATA
    from_shoal = seal(DATA, recipients=_recipients(members), aad=AAD)
    private = base64.b64decode(members["agent00"].private_b64())
    assert json.loads(_peer_open(from_shoal, "agent00", private, AAD)) == DATA


def _documented_example() -> dict[str, Any]:
    """The Python block of docs/zones-crypto.md (or of docs/protocol.md once the section moves there)."""
    marker = "# Example: sealing and opening a private zone's data"
    for name in ("zones-crypto.md", "protocol.md"):
        path = Path(__file__).resolve().parents[2] / "docs" / name
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if marker in text:
            code = text[text.index(marker) :].split("```", 1)[0]
            namespace: dict[str, Any] = {}
            exec(compile(code, str(path), "exec"), namespace)
            return namespace
    raise AssertionError("the documented example is gone")


def test_the_documented_example_interoperates() -> None:
    from cryptography.exceptions import InvalidTag

    doc = _documented_example()
    members = _members(3)
    assert doc["zone_aad"](ATTRS) == AAD
    from_doc = doc["seal"](DATA, _recipients(members), AAD)
    assert open_sealed(from_doc, agentid="agent02", key=members["agent02"], aad=AAD) == DATA
    from_shoal = seal(DATA, recipients=_recipients(members), aad=AAD)
    assert doc["open_sealed"](from_shoal, "agent01", members["agent01"].private_key, AAD) == DATA
    with pytest.raises(InvalidTag):
        doc["open_sealed"](from_shoal, "agent01", members["agent01"].private_key, AAD + b" ")
    with pytest.raises(LookupError):
        doc["open_sealed"](from_shoal, "outsider", BoxKey.generate().private_key, AAD)


@pytest.mark.parametrize("plaintext", [b"[1,2]", b'"text"', b"{", b'{"x":NaN}', b"\xff\xfe{}", b"[" * 100_000])
def test_a_plaintext_that_is_not_a_json_object_is_malformed(plaintext: bytes) -> None:
    members = _members(1)
    sealed = _peer_seal(plaintext, {"agent00": members["agent00"].public_raw}, AAD)
    assert _reason(sealed, "agent00", members["agent00"]) == "malformed"


# --- the zone key ------------------------------------------------------------------------------------------------


def test_a_box_key_survives_its_text_form() -> None:
    key = BoxKey.generate()
    again = BoxKey.from_private_b64(key.private_b64())
    assert again.public_b64 == key.public_b64 and len(base64.b64decode(key.public_b64, validate=True)) == 32
    assert key.private_b64() not in repr(key)
    for text in ("garbage!", base64.b64encode(bytes(31)).decode(), _b64url(os.urandom(32))):
        with pytest.raises(ValueError):
            BoxKey.from_private_b64(text)


def test_the_zone_key_is_stored_once_per_group_and_scope() -> None:
    first = load_or_create_box_key("alpha")
    assert list(MemoryKeyring.store) == [(SERVICE, "zonekey:alpha")]
    stored = MemoryKeyring.store[(SERVICE, "zonekey:alpha")]
    assert load_or_create_box_key("alpha").public_b64 == first.public_b64
    assert MemoryKeyring.store[(SERVICE, "zonekey:alpha")] == stored
    assert load_or_create_box_key("beta").public_b64 != first.public_b64
    assert load_or_create_box_key("alpha", "/home/ann/.shoal-headless").public_b64 != first.public_b64
    load_or_create("alpha")  # the identity is a separate entry
    assert len(MemoryKeyring.store) == 4 and (SERVICE, "group-identity:alpha") in MemoryKeyring.store


@pytest.mark.parametrize("stored", ["garbage", base64.b64encode(bytes(7)).decode()])
def test_a_damaged_stored_zone_key_is_a_config_error(stored: str) -> None:
    MemoryKeyring.store[(SERVICE, "zonekey:alpha")] = stored
    with pytest.raises(ConfigError, match="damaged") as caught:
        load_or_create_box_key("alpha")
    assert "zonekey:alpha" in caught.value.fix


@pytest.mark.parametrize("broken", ["get_password", "set_password"])
def test_an_unusable_keyring_is_a_config_error(monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    from keyring.errors import KeyringError, NoKeyringError

    def refuse(*_args: object) -> None:
        raise NoKeyringError("no backend") if broken == "get_password" else KeyringError("locked")

    monkeypatch.setattr(MemoryKeyring, broken, refuse)
    with pytest.raises(ConfigError, match="keyring") as caught:
        load_or_create_box_key("alpha")
    assert "keyring" in caught.value.fix.lower()
    assert MemoryKeyring.store == {}
