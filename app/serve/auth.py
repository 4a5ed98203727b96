"""Who may talk to `shoal serve`: the bind rule, the bearer token, and per-client rate limits.

Loopback needs no token only when the owner turns `serve.auth` off; any other address always needs it,
because the API runs tools on this machine. The token is generated on first run (32 random bytes,
URL-safe), kept in the OS keyring (or `SHOAL_SERVE_TOKEN` where there is none) and compared in constant
time, so a wrong token takes as long to refuse as a nearly right one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass, field

from core.errors import ConfigError
from core.secrets import Secret, get_token, set_token, token_env_var
from core.settings import ServeSettings

log = logging.getLogger(__name__)
MIN_TOKEN_CHARS = 24


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """The server's access rule, decided once at start."""

    token: str | None = field(repr=False)  # None: no token asked (loopback with serve.auth off)
    token_origin: str = ""
    created: bool = False  # the token was generated just now (print it once)
    warnings: tuple[str, ...] = ()

    def allows(self, header: str | None) -> bool:
        """Constant-time check of an `Authorization: Bearer <token>` header."""
        if self.token is None:
            return True
        presented = ""
        if header and header[:7].lower() == "bearer ":
            presented = header[7:].strip()
        # Compare digests: equal length whatever was sent, so timing says nothing about the token.
        expected = hashlib.sha256(self.token.encode()).digest()
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), expected)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def ensure_token(name: str) -> tuple[Secret, bool]:
    """The stored token, or a new one stored in the keyring. (secret, created)."""
    found = get_token(name)
    if found is not None:
        return found, False
    value = new_token()
    set_token(name, value)
    return Secret(value, "keyring"), True


def rotate_token(name: str) -> str:
    value = new_token()
    set_token(name, value)
    return value


def decide_access(settings: ServeSettings) -> Access:
    """Apply the bind rule. Raises ConfigError for a combination that would expose the agent."""
    loopback = is_loopback(settings.host)
    if not settings.auth and not loopback:
        raise ConfigError(
            f"serve.auth is off but serve.host is {settings.host}, which other machines can reach.",
            "Bind to 127.0.0.1, or keep serve.auth on (the default) so clients need the bearer token.",
        )
    if "*" in settings.cors_origins:
        raise ConfigError(
            "serve.cors_origins contains '*': any web page could drive the agent.",
            "List the exact origins that may call the API, e.g. https://dash.example.com.",
        )
    warnings: list[str] = []
    tls = bool(settings.tls_certfile and settings.tls_keyfile)
    if bool(settings.tls_certfile) != bool(settings.tls_keyfile):
        raise ConfigError("Only one of serve.tls_certfile and serve.tls_keyfile is set.", "Set both, or neither.")
    if not loopback and not tls:
        warnings.append(
            f"TLS is off on {settings.host}: the bearer token and every message travel in clear text. "
            "Set serve.tls_certfile/tls_keyfile, or put the server behind a TLS proxy."
        )
    if not settings.auth:
        warnings.append(
            "serve.auth is off: any program on this machine can use the agent (browsers only through localhost)."
        )
        return Access(None, warnings=tuple(warnings))
    try:
        secret, created = ensure_token(settings.token_name)
    except ConfigError as exc:
        raise ConfigError(exc.message, f"{exc.fix} (variable: {token_env_var(settings.token_name)})") from exc
    if len(secret.value) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"The bearer token from {secret.origin} is {len(secret.value)} characters; at least {MIN_TOKEN_CHARS} "
            "are needed.",
            'Use a long random one: python3 -c "import secrets; print(secrets.token_urlsafe(32))".',
        )
    return Access(secret.value, secret.origin, created, tuple(warnings))
