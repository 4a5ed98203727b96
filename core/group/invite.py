"""A group's join secret and the invite that carries it (docs/groups.md, "Onboarding").

`shoal group create` makes 32 random bytes, shows them once inside an invite code and keeps them in the OS
keyring. Whoever holds the secret can prove it without sending it: the proof is an HMAC over the joiner's
name, public keys and a one-time challenge, so a proof is useless for any other agent, name or challenge, and
a copy of an old exchange proves nothing. The invite also names the founder, the one agent whose
self-admission every member accepts (the root of every other admission).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError, UserError
from core.group.identity import b64url, b64url_decode, scoped_account
from core.secrets import SERVICE

INVITE_PREFIX = "shoal-invite-1:"
SECRET_BYTES = 32
PROOF_FIELDS = ("group", "agentid", "name", "publickey", "boxkey", "challenge", "joinid")


@dataclass(frozen=True)
class Invite:
    """What a newcomer needs: the group's name, where its brokers are, the secret and the founder's id."""

    group: str
    secret: bytes
    founder: str
    bootstrap: tuple[str, ...] = ()
    security_protocol: str = "PLAINTEXT"

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"Invite(group={self.group!r}, founder={self.founder!r}, bootstrap={self.bootstrap!r})"

    @classmethod
    def create(cls, group: str, founder: str, bootstrap: list[str], security_protocol: str = "PLAINTEXT") -> Invite:
        return cls(group, secrets.token_bytes(SECRET_BYTES), founder, tuple(bootstrap), security_protocol)

    def code(self) -> str:
        """The text a person passes on (chat, mail, a password manager): everything to join, in one line."""
        body = {
            "g": self.group,
            "s": b64url(self.secret),
            "f": self.founder,
            "b": list(self.bootstrap),
            "p": self.security_protocol,
        }
        return INVITE_PREFIX + b64url(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())

    @classmethod
    def parse(cls, code: str) -> Invite:
        text = "".join(code.split())
        if not text.startswith(INVITE_PREFIX):
            raise UserError(
                "That is not a Shoal invite code.",
                f"An invite starts with {INVITE_PREFIX!r}; ask the group's founder for one (shoal group create).",
            )
        try:
            body = json.loads(b64url_decode(text[len(INVITE_PREFIX) :]))
            secret = b64url_decode(str(body["s"]))
            invite = cls(
                str(body["g"]),
                secret,
                str(body["f"]),
                tuple(str(b) for b in body.get("b", [])),
                str(body.get("p", "PLAINTEXT")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError("The invite code is damaged.", "Copy it again, in one piece.") from exc
        if len(invite.secret) != SECRET_BYTES or len(invite.founder) != 24:
            raise UserError("The invite code is damaged.", "Copy it again, in one piece.")
        return invite

    # --- proofs ------------------------------------------------------------------------------------------

    def proof(self, fields: dict[str, Any]) -> str:
        """HMAC-SHA256 with the secret over the canonical JSON of the binding fields (PROOF_FIELDS)."""
        return b64url(hmac.new(self.secret, _binding(self.group, fields), hashlib.sha256).digest())

    def check(self, fields: dict[str, Any], proof: Any) -> bool:
        """Constant-time comparison; False for anything that is not a proof string."""
        if not isinstance(proof, str):
            return False
        return hmac.compare_digest(self.proof(fields).encode(), proof.encode())


def _binding(group: str, fields: dict[str, Any]) -> bytes:
    body = {name: str(fields.get(name, "")) for name in PROOF_FIELDS}
    body["group"] = group
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- the keyring ---------------------------------------------------------------------------------------------


def _account(group: str, scope: str) -> str:
    return scoped_account("group-secret", group, scope)


def load_invite(group: str, scope: str = "") -> Invite | None:
    """The invite this agent holds for `group`, or None (an open group, protocol 1.0 behaviour)."""
    import keyring
    from keyring.errors import KeyringError

    try:
        stored = keyring.get_password(SERVICE, _account(group, scope))
    except (KeyringError, RuntimeError):
        return None
    if not stored:
        return None
    try:
        invite = Invite.parse(stored)
    except UserError as exc:
        raise ConfigError(
            f"The join secret stored for group {group!r} is damaged.",
            f"Join again with the invite code: shoal group join <code> (keyring entry {SERVICE}/"
            f"{_account(group, scope)}).",
        ) from exc
    return invite if invite.group == group else None


def store_invite(invite: Invite, scope: str = "") -> None:
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(SERVICE, _account(invite.group, scope), invite.code())
    except (KeyringError, RuntimeError) as exc:
        raise ConfigError(
            f"No usable OS keyring to keep the group's join secret ({type(exc).__name__}: {exc}).",
            "Install/unlock a keyring (GNOME Keyring, KWallet, macOS Keychain), or pip install keyrings.alt "
            "on a headless machine.",
        ) from exc


def forget_invite(group: str, scope: str = "") -> bool:
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(SERVICE, _account(group, scope))
        return True
    except (PasswordDeleteError, KeyringError, RuntimeError):
        return False
