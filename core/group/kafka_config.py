"""Group settings turned into aiokafka keyword arguments, in one place, with the secrets handled once.

Every Kafka client Shoal opens (producer, consumers, admin, the connection test) starts from
`client_kwargs`, so security settings cannot drift between them. The SASL password lives in the OS keyring
(never in config.toml); a `SHOAL_GROUP_PASSWORD` environment variable is the fallback for headless machines.
The dicts returned here hold that password, so their `repr` masks it, and `describe()` gives a redacted view
meant for logs and the settings dialog.

aiokafka is imported inside functions only: the app starts (and most tests run) without group mode, and
importing aiokafka costs time and pulls in its whole dependency tree.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from core import paths
from core.errors import ConfigError
from core.group.envelope import MAX_RECORD_BYTES
from core.secrets import SERVICE, mask

if TYPE_CHECKING:
    import ssl

    from core.settings import GroupSettings

PASSWORD_ENV = "SHOAL_GROUP_PASSWORD"
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SSL_PROTOCOLS = ("SSL", "SASL_SSL")
# Room for the record batch framing around the largest record, so a consumer can always fetch it.
FETCH_OVERHEAD_BYTES = 64 * 1024
_SECRET_KEYS = frozenset({"sasl_plain_password"})
DEFAULT_PORT = 9092
NOT_TLS_HINT = "The port may not speak TLS (a PLAINTEXT listener?), or the broker wants a client certificate."


class KafkaKwargs(dict[str, Any]):
    """A plain dict for `**` into aiokafka, whose repr never shows the password (in case one gets logged)."""

    def __repr__(self) -> str:
        return repr(_redacted(self))

    __str__ = __repr__


def _redacted(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (mask(str(v)) if k in _SECRET_KEYS and v else v) for k, v in values.items()}


# -- the password ------------------------------------------------------------------------------------------


def _account(group: str) -> str:
    return f"group-password:{group}"


def group_password(settings: GroupSettings) -> str | None:
    """The SASL password for this group: the keyring first, then $SHOAL_GROUP_PASSWORD, else None."""
    import keyring
    from keyring.errors import KeyringError

    try:
        stored = keyring.get_password(SERVICE, _account(settings.name))
    except (KeyringError, RuntimeError):
        stored = None  # no usable keyring (headless Linux): the environment is the documented fallback
    return stored or os.environ.get(PASSWORD_ENV) or None


def set_group_password(group: str, value: str) -> None:
    """Store the SASL password for `group` in the OS keyring (what `shoal group set-password` calls)."""
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(SERVICE, _account(group), value)
    except (KeyringError, RuntimeError) as exc:
        raise ConfigError(
            f"No usable OS keyring to store the group password ({type(exc).__name__}: {exc}).",
            f"Install/unlock a keyring (GNOME Keyring, KWallet, macOS Keychain), or set {PASSWORD_ENV} instead.",
        ) from exc


# -- TLS ---------------------------------------------------------------------------------------------------


def _existing_file(setting: str, value: str) -> str | None:
    """The expanded path of a configured file, or None when unset; ConfigError naming the setting if missing."""
    if not value:
        return None
    path = paths.expand(value)
    if not path.is_file():
        raise ConfigError(
            f"group.{setting} points to {path}, which does not exist or is not a file.",
            f"Fix group.{setting} (Settings › Group), or clear it to use the default.",
        )
    return str(path)


def ssl_context(settings: GroupSettings) -> ssl.SSLContext:
    """A verifying client context from the configured CA and client certificate (mutual TLS when both set)."""
    import ssl as ssl_module

    from aiokafka.helpers import create_ssl_context

    cafile = _existing_file("ssl_cafile", settings.ssl_cafile)
    certfile = _existing_file("ssl_certfile", settings.ssl_certfile)
    keyfile = _existing_file("ssl_keyfile", settings.ssl_keyfile)
    if keyfile and not certfile:
        raise ConfigError(
            "group.ssl_keyfile is set but group.ssl_certfile is not.",
            "Set group.ssl_certfile to the client certificate that goes with the key, or clear group.ssl_keyfile.",
        )
    try:
        context = create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile)
    except (ssl_module.SSLError, OSError, ValueError) as exc:
        named = ", ".join(f"{n}={p}" for n, p in (("ssl_cafile", cafile), ("ssl_certfile", certfile)) if p)
        raise ConfigError(
            f"Cannot load the TLS files ({named or 'system CAs'}): {exc}",
            "Check the files are PEM certificates (and the key matches the certificate).",
        ) from exc
    context.check_hostname = settings.ssl_check_hostname
    return context


def explain_tls_error(exc: BaseException, host: str) -> tuple[str, str]:
    """(what happened, what to change) for a failed TLS handshake: shared by joining and the connection test."""
    import ssl as ssl_module

    if isinstance(exc, ssl_module.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        hint = "Set group.ssl_cafile to the CA that signed the broker's certificate."
        if "mismatch" in reason:
            hint = f"The certificate is not for {host}: use a name it lists, or turn off group.ssl_check_hostname."
        elif "expired" in reason:
            hint = "The broker's certificate has expired: ask the cluster's admin to renew it."
        return f"certificate verification failed: {reason}", hint
    if isinstance(exc, ssl_module.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}", NOT_TLS_HINT
    return f"the connection closed during the TLS handshake ({type(exc).__name__})", NOT_TLS_HINT


# -- kwargs ------------------------------------------------------------------------------------------------


def split_server(server: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `host` (port 9092); ConfigError otherwise."""
    text = server.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or str(DEFAULT_PORT)
    else:
        host, _, port = text.partition(":") if text.count(":") == 1 else (text, "", str(DEFAULT_PORT))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{server!r} is not host:port.", "Fix group.bootstrap_servers, e.g. kafka.example.com:9092.")
    return host, int(port)


def error_text(exc: BaseException) -> str:
    """A readable one-liner for an aiokafka error (some carry only a connection object as their message)."""
    text = str(exc)
    if not text or "<AIOKafkaConnection" in text:
        text = getattr(exc, "description", "") or ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def client_id(settings: GroupSettings) -> str:
    """`shoal-<agent name>`, restricted to characters every Kafka version accepts (quotas and logs use it)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", settings.display_name()).strip("-") or "agent"
    return f"shoal-{name}"


def _sasl_kwargs(settings: GroupSettings) -> dict[str, Any]:
    if not settings.sasl_username:
        raise ConfigError(
            f"group.security_protocol is {settings.security_protocol} but group.sasl_username is empty.",
            "Set group.sasl_username to your Kafka user, or choose PLAINTEXT/SSL if the cluster has no SASL.",
        )
    password = group_password(settings)
    if not password:
        raise ConfigError(
            f"No SASL password is stored for group {settings.name!r} (user {settings.sasl_username!r}).",
            f"Run `shoal group set-password` (stored in the OS keyring), or set {PASSWORD_ENV}.",
        )
    return {
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": password,
    }


def client_kwargs(settings: GroupSettings) -> KafkaKwargs:
    """Keyword arguments every aiokafka client (producer, consumer, admin) shares."""
    kwargs = KafkaKwargs(
        bootstrap_servers=list(settings.bootstrap_servers),
        security_protocol=settings.security_protocol,
        request_timeout_ms=settings.client.request_timeout_ms,
        client_id=client_id(settings),
    )
    if settings.security_protocol in SSL_PROTOCOLS:
        kwargs["ssl_context"] = ssl_context(settings)
    if settings.security_protocol in SASL_PROTOCOLS:
        kwargs.update(_sasl_kwargs(settings))
    return kwargs


def producer_kwargs(settings: GroupSettings) -> KafkaKwargs:
    """Producer arguments. Idempotence is off on purpose: Tansu (and some managed brokers) reject
    InitProducerId, and Shoal does not need it: the outbox retries until acknowledged, and receivers drop
    duplicates by envelope id (docs/protocol.md §5), which covers the duplicates idempotence would prevent."""
    kwargs = client_kwargs(settings)
    kwargs.update(
        linger_ms=settings.client.linger_ms,
        max_request_size=settings.client.max_request_size,
        acks="all",
        enable_idempotence=False,
    )
    return kwargs


def max_fetch_bytes(settings: GroupSettings) -> int:
    """A partition fetch must hold the largest record any peer may send, or that consumer stalls on it."""
    return max(MAX_RECORD_BYTES, settings.client.max_request_size) + FETCH_OVERHEAD_BYTES


def consumer_kwargs(settings: GroupSettings, group_id: str | None, *, earliest: bool) -> KafkaKwargs:
    """Consumer arguments. Offsets are committed by hand, only after an envelope is recorded (§5)."""
    kwargs = client_kwargs(settings)
    per_partition = max_fetch_bytes(settings)
    kwargs.update(
        group_id=group_id,
        session_timeout_ms=settings.client.session_timeout_ms,
        heartbeat_interval_ms=settings.client.heartbeat_interval_ms,
        fetch_max_wait_ms=settings.client.fetch_max_wait_ms,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if earliest else "latest",
        max_partition_fetch_bytes=per_partition,
        fetch_max_bytes=max(52_428_800, per_partition),  # aiokafka's default, unless one record is bigger
    )
    return kwargs


def admin_kwargs(settings: GroupSettings) -> KafkaKwargs:
    """AIOKafkaAdminClient arguments (it takes the shared ones only)."""
    return client_kwargs(settings)


def describe(settings: GroupSettings) -> dict[str, Any]:
    """The connection settings for logs and dialogs: no password, only whether one is available."""
    sasl = settings.security_protocol in SASL_PROTOCOLS
    out: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "security_protocol": settings.security_protocol,
        "client_id": client_id(settings),
        "request_timeout_ms": settings.client.request_timeout_ms,
    }
    if settings.security_protocol in SSL_PROTOCOLS:
        out.update(
            ssl_cafile=settings.ssl_cafile or "(system CAs)",
            ssl_certfile=settings.ssl_certfile or None,
            ssl_keyfile=settings.ssl_keyfile or None,
            ssl_check_hostname=settings.ssl_check_hostname,
        )
    if sasl:
        out.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_username=settings.sasl_username,
            sasl_password="set" if group_password(settings) else "missing",
        )
    return out
