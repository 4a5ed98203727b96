"""The cluster as a whole: SASL login (credentials present, then what the broker says to them) and metadata
(brokers, controller, and whether the addresses brokers advertise are reachable from here).

aiokafka's bootstrap logs and swallows the reason a login failed, so these checks open the connection
themselves with `create_conn` (ApiVersions, then SaslHandshake and SaslAuthenticate), and keep it for the
metadata request: one login, one connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.group import kafka_config as kc
from core.group.kshark.report import TIMEOUT_HINTS, Budget, Failed, Passed

if TYPE_CHECKING:
    from core.settings import GroupSettings

AUTH_ERRORS = frozenset(
    {"SaslAuthenticationFailed", "AuthenticationFailedError", "UnsupportedSaslMechanismError", "IllegalSaslStateError"}
)
_CONN_KEYS = ("client_id", "ssl_context", "security_protocol", "sasl_mechanism", "sasl_plain_username")


@dataclass
class Link:
    """The one Kafka connection of a run, shared by the SASL and metadata checks; `close()` is idempotent."""

    kwargs: dict[str, Any]
    servers: list[tuple[str, int]]
    budget: Budget
    conn: Any = None
    where: str = ""

    async def open(self) -> Any:
        if self.conn is None:
            self.conn, self.where = await _connect(self.kwargs, self.servers, self.budget.step())
        return self.conn

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


async def _connect(kwargs: dict[str, Any], servers: list[tuple[str, int]], timeout: float) -> tuple[Any, str]:
    """The first server that completes the handshake; authentication errors propagate as they are."""
    from aiokafka.conn import create_conn

    options = {k: kwargs[k] for k in (*_CONN_KEYS, "sasl_plain_password") if k in kwargs}
    failures = []
    for host, port in servers:
        try:
            conn = await create_conn(host, port, request_timeout_ms=max(100, int(timeout * 1000)), **options)
        except Exception as exc:
            if type(exc).__name__ in AUTH_ERRORS:
                raise
            failures.append(f"{host}:{port}: {kc.error_text(exc)}")
        else:
            return conn, f"{host}:{port}"
    raise Failed(f"no Kafka handshake ({'; '.join(failures)})", TIMEOUT_HINTS[""])


def missing_credentials(settings: GroupSettings) -> Failed | None:
    """What the SASL check fails with before any network call: no user name, or no password stored."""
    if not settings.sasl_username:
        return Failed(
            f"group.security_protocol is {settings.security_protocol} but group.sasl_username is empty",
            "Set group.sasl_username to your Kafka user, or choose PLAINTEXT/SSL if the cluster has no SASL.",
        )
    if not kc.group_password(settings):
        return Failed(
            f"no SASL password is stored for group {settings.name!r} (user {settings.sasl_username!r})",
            f"Run `shoal group set-password` (stored in the OS keyring), or set {kc.PASSWORD_ENV}.",
        )
    return None


async def sasl(settings: GroupSettings, link: Link) -> Passed:
    user, mechanism = settings.sasl_username, settings.sasl_mechanism
    data = {"mechanism": mechanism, "username": user, "password": "set"}
    try:
        await link.open()
    except Exception as exc:
        if type(exc).__name__ not in AUTH_ERRORS:
            raise
        hint = "Check group.sasl_username and group.sasl_mechanism; store the password with `shoal group set-password`."
        if type(exc).__name__ == "UnsupportedSaslMechanismError":
            hint = "Set group.sasl_mechanism to one the broker enables, or check this listener takes SASL at all."
        raise Failed(f"the broker refused {user!r} ({kc.error_text(exc)})", hint, data=data) from exc
    detail = f"logged in as {user} ({mechanism}) at {link.where}"
    if settings.security_protocol == "SASL_PLAINTEXT" and mechanism == "PLAIN":
        raise Failed(
            f"{detail}, but the password crosses the network unencrypted (SASL_PLAINTEXT with PLAIN)",
            "Use SASL_SSL, or a SCRAM mechanism, unless the network is trusted.",
            "warn",
            data,
        )
    return Passed(detail, data)


async def metadata(link: Link) -> Passed:
    """Brokers and controller; also that the addresses brokers advertise are reachable from here (the most
    common Kafka set-up mistake: advertised.listeners naming container or internal host names)."""
    from aiokafka.protocol.metadata import MetadataRequest

    conn = await link.open()
    try:
        meta = (await conn.send(MetadataRequest([]))).to_object()
    finally:
        link.close()
    brokers = [(int(b.get("node_id", -1)), str(b["host"]), int(b["port"])) for b in meta["brokers"]]
    reached = await asyncio.gather(*(_reachable(h, p, link.budget.step() / 2) for _, h, p in brokers))
    listing = ", ".join(f"{i} at {h}:{p}" for i, h, p in brokers[:5]) + (" …" if len(brokers) > 5 else "")
    detail = f"{len(brokers)} broker(s): {listing}; controller {meta.get('controller_id')}"
    detail += f", cluster {meta.get('cluster_id')}"
    data = {
        "brokers": [
            {"id": i, "host": h, "port": p, "reachable": ok} for (i, h, p), ok in zip(brokers, reached, strict=True)
        ],
        "controller_id": meta.get("controller_id"),
        "cluster_id": meta.get("cluster_id"),
    }
    unreachable = [f"{h}:{p}" for (_, h, p), ok in zip(brokers, reached, strict=True) if not ok]
    if unreachable:
        raise Failed(
            f"{detail}; brokers advertise addresses this machine cannot reach: {', '.join(unreachable)}",
            "The brokers' advertised.listeners must name addresses clients can reach.",
            "fail" if len(unreachable) == len(brokers) else "warn",
            data,
        )
    return Passed(detail, data)


async def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), max(0.05, timeout))
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
