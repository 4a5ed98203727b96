"""End-to-end encryption of a private zone's payloads: only the zone's members can read them; the broker,
the group's other agents and anyone reading the topics see ciphertext (docs/zones-crypto.md has the format
byte by byte).

One payload goes to many members, so it is encrypted once, under a fresh random content key
(ChaCha20-Poly1305), and only that 32-byte key is wrapped for each member: the envelope grows by about 100
bytes per member, not by a copy of the payload. Each message gets a fresh ephemeral X25519 key; a member's
key-encryption key is HKDF-SHA256 of the X25519 shared secret, salted with the ephemeral public key and bound
to the member's agent id (the `info`), so a wrapped entry only opens for the member it names.

The associated data (`aad`) is the envelope's identity: its `id`, `type`, `zone`, `agentid` and `group`
(`aad_for` builds it). Both the payload and every wrapped key are bound to it, so a ciphertext cannot be moved
into another envelope: not replayed under a new `id`, not relabelled as another event type (a memory item
passed off as a task), not carried into another zone or group, and not re-sent by another agent under its own
signature (the signature proves who sent an envelope, the AAD that this ciphertext was made for it). The
rest of the envelope is covered by the sender's signature as before.

What this does not give: forward secrecy for members (a member's box key, once stolen, opens every payload
ever sealed for it) and removal of access to what was already sent (a member dropped from a zone can still
open what it received before). Sender authenticity comes from the envelope signature, not from here.

`cryptography` is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from core.errors import ConfigError
from core.group.envelope import canonical
from core.group.identity import scoped_account
from core.secrets import SERVICE

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

log = logging.getLogger(__name__)

ALG = "x25519-hkdf-sha256-chacha20poly1305"
HKDF_INFO_PREFIX = b"shoal-zone-v1"
AAD_ATTRIBUTES = ("id", "type", "zone", "agentid", "group")
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
REASONS = ("not-a-recipient", "malformed", "tampered")
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class ZoneSealError(Exception):
    """Why a sealed payload did not open; `reason` is one of REASONS, the only thing `open_sealed` raises."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _fail(reason: str, detail: str) -> NoReturn:
    raise ZoneSealError(reason, detail)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_chars(size: int) -> int:
    return (4 * size + 2) // 3


def _unb64url(value: object, what: str, *, size: int | None = None, min_size: int = 0) -> bytes:
    """Strict base64url without padding: one spelling per byte string, so nothing can be appended or
    re-spelled unseen (the lenient decoder skips stray characters and ignores trailing bits)."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        _fail("malformed", f"{what} is not base64url")
    if (size is not None and len(value) != _b64url_chars(size)) or len(value) < _b64url_chars(min_size):
        _fail("malformed", f"{what} has the wrong length ({len(value)} characters)")
    unused_bits = {0: 0, 2: 0x0F, 3: 0x03}[len(value) % 4]
    if value and _B64URL_ALPHABET.index(value[-1]) & unused_bits:
        _fail("malformed", f"{what} is not canonical base64url (unused bits set)")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))  # cannot fail once the above holds


def _check_b64url(value: object, what: str, size: int) -> str:
    """`_unb64url` without decoding, for other members' entries: a `size` that is a multiple of 3 has exactly
    one spelling of its length, so length and alphabet are the whole check."""
    if not isinstance(value, str) or len(value) != _b64url_chars(size) or not _B64URL.fullmatch(value):
        _fail("malformed", f"{what} is not {size} bytes of base64url")
    return value


def aad_for(attrs: Mapping[str, Any]) -> bytes:
    """The associated data for an envelope: the compact JSON array of its id, type, zone, agentid and group
    (a JSON array, not a plain join, so no choice of strings can make two identities collide)."""
    values = [attrs[name] for name in AAD_ATTRIBUTES]
    if not all(isinstance(value, str) for value in values):
        raise TypeError("the envelope's id, type, zone, agentid and group must be strings")
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- keys ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxKey:  # frozen, yet cached_property works: it writes __dict__ directly
    """An agent's X25519 key pair for zones, separate from its Ed25519 identity (one key, one purpose)."""

    private_key: X25519PrivateKey = field(repr=False)

    @functools.cached_property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode("ascii")

    def private_b64(self) -> str:
        return base64.b64encode(self.private_key.private_bytes_raw()).decode("ascii")

    @classmethod
    def generate(cls) -> BoxKey:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_b64(cls, text: str) -> BoxKey:
        """Raises ValueError for anything but standard base64 of 32 bytes."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        return cls(X25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True)))


@functools.lru_cache(maxsize=1024)
def public_key_from_b64(text: str) -> X25519PublicKey:
    """A member's box public key (standard base64 of the raw 32 bytes, like the Ed25519 one); ValueError if
    it is not one. Cached: a zone seals for the same members again and again."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    raw = base64.b64decode(text, validate=True)
    if len(raw) != KEY_BYTES:
        raise ValueError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def _account(group: str, scope: str) -> str:
    return scoped_account("zonekey", group, scope)


def load_or_create_box_key(group: str, scope: str = "") -> BoxKey:
    """This agent's zone key for `group`, created and stored in the keyring on first use.

    Kept like the identity (core/group/identity.py): per group, `scope` (the data folder) telling apart two
    agents on one machine. A key that changed on every start would make every payload sealed for the old
    one unreadable, so no usable keyring is a clear error rather than a throwaway key.
    """
    import keyring
    from keyring.errors import KeyringError

    account = _account(group, scope)
    try:
        stored = keyring.get_password(SERVICE, account)
    except (KeyringError, RuntimeError) as exc:
        raise ConfigError(
            f"No usable keyring to keep this agent's zone key: {exc}",
            "Install and unlock a keyring (GNOME Keyring, KWallet, macOS Keychain), or "
            "pip install keyrings.alt for a file-based one on headless machines.",
        ) from exc
    if stored:
        try:
            return BoxKey.from_private_b64(stored)
        except ValueError as exc:
            raise ConfigError(
                f"The zone key stored in the keyring for {group!r} is damaged.",
                f"Delete the keyring entry {SERVICE}/{account}; the next start makes a new key "
                "(payloads sealed for the old one stay unreadable).",
            ) from exc
    box_key = BoxKey.generate()
    try:
        keyring.set_password(SERVICE, account, box_key.private_b64())
    except (KeyringError, RuntimeError) as exc:
        raise ConfigError(f"Cannot store the zone key in the keyring: {exc}", "Unlock the keyring.") from exc
    log.info("created zone key for group %s", group)
    return box_key


# --- sealing and opening -------------------------------------------------------------------------------------


def _kek(shared: bytes, epk: bytes, agentid: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = HKDF_INFO_PREFIX + agentid.encode("utf-8")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=epk, info=info).derive(shared)


def seal(data: dict[str, Any], *, recipients: Mapping[str, str], aad: bytes) -> dict[str, Any]:
    """`data` encrypted for `recipients` (agent id -> box public key, standard base64), bound to `aad`.

    Raises ValueError when there is no recipient, a key is not a usable X25519 public key, or `data` is not
    JSON (NaN): the sender's mistake, found before anything is sent."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    if not recipients:
        raise ValueError("a sealed payload needs at least one recipient")
    keys = {}
    for agentid, public_b64 in recipients.items():
        if not isinstance(agentid, str) or not agentid:
            raise ValueError(f"a recipient's agent id must be a non-empty string, not {agentid!r}")
        try:
            keys[agentid] = public_key_from_b64(public_b64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the zone key of {agentid} is not an X25519 public key: {exc}") from exc
    content_key, nonce = os.urandom(KEY_BYTES), os.urandom(NONCE_BYTES)
    ciphertext = ChaCha20Poly1305(content_key).encrypt(nonce, canonical(data), aad)
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes_raw()
    entries = []
    for agentid in sorted(keys):
        try:
            shared = ephemeral.exchange(keys[agentid])
        except ValueError as exc:  # a low-order point: no shared secret
            raise ValueError(f"the zone key of {agentid} is not a usable X25519 public key") from exc
        wrap_nonce = os.urandom(NONCE_BYTES)
        wrapped = ChaCha20Poly1305(_kek(shared, epk, agentid)).encrypt(wrap_nonce, content_key, aad)
        entries.append({"agentid": agentid, "nonce": _b64url(wrap_nonce), "wrapped": _b64url(wrapped)})
    return {
        "alg": ALG,
        "epk": _b64url(epk),
        "nonce": _b64url(nonce),
        "ciphertext": _b64url(ciphertext),
        "recipients": entries,
    }


@dataclass(frozen=True, slots=True)
class _Parsed:
    epk: bytes
    nonce: bytes
    ciphertext: bytes
    wrapped: dict[str, tuple[str, str]]  # agent id -> (nonce, wrapped content key), checked, still base64url


def _parse(sealed: object) -> _Parsed:
    """Every field checked before any use, so a record is malformed (or not) the same for every member."""
    if not isinstance(sealed, dict):
        _fail("malformed", "a sealed payload is a JSON object")
    if sealed.get("alg") != ALG:
        _fail("malformed", f"unknown alg {str(sealed.get('alg'))[:64]!r}")
    epk = _unb64url(sealed.get("epk"), "epk", size=KEY_BYTES)
    nonce = _unb64url(sealed.get("nonce"), "nonce", size=NONCE_BYTES)
    ciphertext = _unb64url(sealed.get("ciphertext"), "ciphertext", min_size=TAG_BYTES)
    entries = sealed.get("recipients")
    if not isinstance(entries, list) or not entries:
        _fail("malformed", "recipients is a non-empty list")
    wrapped: dict[str, tuple[str, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("agentid"), str) or not entry["agentid"]:
            _fail("malformed", "a recipient entry lacks its agentid")
        if entry["agentid"] in wrapped:
            _fail("malformed", "a recipient appears twice")
        wrapped[entry["agentid"]] = (
            _check_b64url(entry.get("nonce"), "a recipient nonce", NONCE_BYTES),
            _check_b64url(entry.get("wrapped"), "a wrapped key", KEY_BYTES + TAG_BYTES),
        )
    return _Parsed(epk, nonce, ciphertext, wrapped)


def _load(plaintext: bytes) -> dict[str, Any]:
    def refuse(constant: str) -> NoReturn:
        raise ValueError(f"{constant} is not JSON")

    try:
        data = json.loads(plaintext.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):
        _fail("malformed", "the payload is not UTF-8 JSON")
    if not isinstance(data, dict):
        _fail("malformed", "the payload is not a JSON object")
    return data


def open_sealed(sealed: dict[str, Any], *, agentid: str, key: BoxKey, aad: bytes) -> dict[str, Any]:
    """The data `seal` was given, for recipient `agentid` holding `key`. Raises only ZoneSealError:
    `malformed` (not a well-formed sealed payload), `not-a-recipient`, or `tampered` (a check failed: changed
    bytes, another envelope's AAD, or an entry that is not this member's)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    parsed = _parse(sealed)
    if agentid not in parsed.wrapped:
        _fail("not-a-recipient", f"not sealed for {agentid}")
    wrap_nonce, wrapped = (_unb64url(text, "own entry") for text in parsed.wrapped[agentid])
    try:
        shared = key.private_key.exchange(X25519PublicKey.from_public_bytes(parsed.epk))
    except ValueError:
        _fail("malformed", "epk is not a usable X25519 public key")
    try:
        content_key = ChaCha20Poly1305(_kek(shared, parsed.epk, agentid)).decrypt(wrap_nonce, wrapped, aad)
        plaintext = ChaCha20Poly1305(content_key).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        _fail("tampered", "authentication failed")
    return _load(plaintext)
