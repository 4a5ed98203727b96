"""The "Test connection" report: each layer between this machine and the group, checked one at a time.

Kafka clients report almost every failure as "unable to bootstrap", which tells the user nothing. Checking
DNS, TCP, TLS, authentication, metadata, topics and a real round trip separately names the layer at fault and
what to change there. Checks are yielded as they finish so a dialog (or the CLI) can show progress, and a
failure that makes later checks pointless turns them into "skip" with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from core.errors import ConfigError, ShoalError
from core.group import kafka_config as kc
from core.group import topics as tp

if TYPE_CHECKING:
    import ssl

    from core.settings import GroupSettings

Status = Literal["ok", "warn", "fail", "skip"]
_RANK = {"skip": 0, "ok": 1, "warn": 2, "fail": 3}
_SYMBOL = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "–"}
_AUTH_ERRORS = frozenset(
    {"SaslAuthenticationFailed", "AuthenticationFailedError", "UnsupportedSaslMechanismError", "IllegalSaslStateError"}
)
_TIMEOUT_HINTS = {
    "TCP": "A firewall or VPN may be dropping the packets: check the host and port with the cluster's admin.",
    "TLS": "The port may be a PLAINTEXT listener (it waits for a Kafka request): check the port and protocol.",
    "": "The server is slow or not a Kafka broker: check group.bootstrap_servers and group.security_protocol.",
}
EXPIRY_WARN_DAYS = 14
METADATA, SASL, TOPICS, PROBE = "Kafka metadata", "SASL authentication", "Group topics", "Produce/consume probe"


@dataclass(frozen=True)
class Check:
    """One step of the report. `hint` says what to do when the status is not ok."""

    name: str
    status: Status
    detail: str
    hint: str = ""
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Failed(Exception):
    """Raised inside a check to end it with a status other than ok, a detail and a hint."""

    def __init__(self, detail: str, hint: str = "", status: Status = "fail") -> None:
        super().__init__(detail)
        self.detail, self.hint, self.status = detail, hint, status


async def _timed(name: str, timeout: float, step: Callable[[], Awaitable[str]]) -> Check:
    """Run one check within `timeout`; every outcome (even a bug) becomes a Check, so the report finishes."""
    start = time.monotonic()
    status: Status = "ok"
    hint = ""
    try:
        async with asyncio.timeout(timeout):
            detail = await step()
    except _Failed as failed:
        status, detail, hint = failed.status, failed.detail, failed.hint
    except TimeoutError:
        status, detail = "fail", f"no answer within {timeout:g} s"
        hint = _TIMEOUT_HINTS.get(name[:3], _TIMEOUT_HINTS[""])
    except ShoalError as exc:
        status, detail, hint = "fail", exc.message, exc.fix
    except Exception as exc:
        status, detail, hint = "fail", f"{type(exc).__name__}: {exc}", "Unexpected: run again with debug logging."
    return Check(name, status, detail, hint, round((time.monotonic() - start) * 1000, 1))


# -- per server ------------------------------------------------------------------------------------------


async def _dns(host: str, port: int) -> str:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _Failed(
            f"{host} does not resolve ({exc.strerror})",
            "Check the spelling in group.bootstrap_servers, your DNS, and whether the cluster needs a VPN.",
        ) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    return f"{host} → {', '.join(addresses[:4])}{' …' if len(addresses) > 4 else ''}"


async def _tcp(host: str, port: int) -> str:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise _Failed(
            f"cannot connect to {host}:{port} ({exc.strerror or exc})",
            "Nothing listens there: is the broker running, and is the port right?"
            if isinstance(exc, ConnectionRefusedError)
            else "The host is unreachable from here: check the network, VPN and firewall.",
        ) from exc
    peer = writer.get_extra_info("peername")
    writer.close()
    return f"connected to {peer[0]}:{peer[1]}" if peer else "connected"


async def _tls(host: str, port: int, context: ssl.SSLContext) -> str:
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except (OSError, EOFError) as exc:
        raise _Failed(*kc.explain_tls_error(exc, host)) from exc
    try:
        return _describe_certificate(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()


def _describe_certificate(ssl_object: ssl.SSLObject) -> str:
    """Subject, names and expiry of the broker's certificate; WARN when it expires within 14 days."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True) or b"")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        names = []
    days = int((cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() // 86400)
    detail = f"{ssl_object.version()}, subject {cert.subject.rfc4514_string()}, names {', '.join(names) or '(none)'}"
    detail += f", expires in {days} days"
    if days < EXPIRY_WARN_DAYS:
        raise _Failed(detail, "The certificate expires soon: ask the cluster's admin to renew it.", "warn")
    return detail


async def _per_server(server: str, context: ssl.SSLContext | None, tls: bool, timeout: float) -> AsyncIterator[Check]:
    """DNS, TCP and (for SSL protocols) TLS for one bootstrap server; a failure skips the steps after it."""
    try:
        host, port = kc.split_server(server)
    except ConfigError as exc:
        yield Check(f"Address {server}", "fail", exc.message, exc.fix)
        return
    dns = await _timed(f"DNS {host}", timeout, lambda: _dns(host, port))
    yield dns
    tcp = await _timed(f"TCP {host}:{port}", timeout, lambda: _tcp(host, port)) if dns.status == "ok" else None
    yield tcp or Check(f"TCP {host}:{port}", "skip", "DNS lookup failed")
    if not tls:
        return
    if tcp is None or tcp.status != "ok":
        yield Check(f"TLS {host}:{port}", "skip", "no TCP connection")
    elif context is None:
        yield Check(f"TLS {host}:{port}", "skip", "the TLS settings are invalid (see Settings)")
    else:
        yield await _timed(f"TLS {host}:{port}", timeout, lambda: _tls(host, port, context))


# -- once per report ---------------------------------------------------------------------------------------


async def _connect(kwargs: dict[str, Any], servers: list[tuple[str, int]], timeout: float) -> Any:
    """One connection with the full handshake (ApiVersions, then SASL). aiokafka's bootstrap logs and swallows
    the reason a login failed, so the diagnostics open the connection themselves; auth errors propagate."""
    from aiokafka.conn import create_conn

    keys = ("client_id", "ssl_context", "security_protocol", "sasl_mechanism", "sasl_plain_username")
    options = {k: kwargs[k] for k in (*keys, "sasl_plain_password") if k in kwargs}
    failures = []
    for host, port in servers:
        try:
            return await create_conn(host, port, request_timeout_ms=int(timeout * 1000), **options)
        except Exception as exc:
            if type(exc).__name__ in _AUTH_ERRORS:
                raise
            failures.append(f"{host}:{port}: {kc.error_text(exc)}")
    raise _Failed(f"no Kafka handshake ({'; '.join(failures)})", _TIMEOUT_HINTS[""])


async def _metadata(conn: Any, timeout: float) -> str:
    """Brokers and controller; also that the addresses brokers advertise are reachable from here (the most
    common Kafka set-up mistake: advertised.listeners naming container or internal host names)."""
    from aiokafka.protocol.metadata import MetadataRequest

    meta = (await conn.send(MetadataRequest([]))).to_object()
    brokers = [(b["host"], int(b["port"])) for b in meta["brokers"]]
    detail = f"{len(brokers)} broker(s), controller {meta.get('controller_id')}, cluster {meta.get('cluster_id')}"
    reached = await asyncio.gather(*(_reachable(h, p, timeout / 2) for h, p in brokers))
    unreachable = [f"{h}:{p}" for (h, p), ok in zip(brokers, reached, strict=True) if not ok]
    if unreachable:
        raise _Failed(
            f"{detail}; brokers advertise addresses this machine cannot reach: {', '.join(unreachable)}",
            "The brokers' advertised.listeners must name addresses clients can reach.",
            "fail" if len(unreachable) == len(brokers) else "warn",
        )
    return detail


async def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _sasl_check(settings: GroupSettings, auth_error: Exception | None, meta: Check) -> Check:
    user, mechanism = settings.sasl_username, settings.sasl_mechanism
    if auth_error is not None:
        hint = "Check group.sasl_username and group.sasl_mechanism; store the password with `shoal group set-password`."
        if type(auth_error).__name__ == "UnsupportedSaslMechanismError":
            hint = "Set group.sasl_mechanism to one the broker enables, or check this listener takes SASL at all."
        return Check(SASL, "fail", f"the broker refused {user!r} ({kc.error_text(auth_error)})", hint)
    if meta.status == "fail":
        return Check(SASL, "skip", "no Kafka connection")
    if settings.security_protocol == "SASL_PLAINTEXT" and mechanism == "PLAIN":
        return Check(
            SASL,
            "warn",
            f"logged in as {user}, but the password crosses the network unencrypted (SASL_PLAINTEXT with PLAIN)",
            "Use SASL_SSL, or a SCRAM mechanism, unless the network is trusted.",
        )
    return Check(SASL, "ok", f"logged in as {user} ({mechanism}) during the metadata request")


async def _group_topics(manager: tp.TopicManager, settings: GroupSettings) -> str:
    """Missing topics are only a warning (created on join); a single-partition topic with several partitions
    (auto-created by a client) breaks ordering, so it is reported too."""
    specs = tp.group_topics(settings)
    present = await manager.existing()
    missing = [s.name for s in specs if s.name not in present]
    single = [s.name for s in specs if s.partitions == 1 and s.name in present]
    counts = await manager.partitions(single) if single else {}
    wrong = [f"{name} has {count} partitions" for name, count in counts.items() if count != 1]
    if wrong:
        raise _Failed(
            "; ".join(wrong) + " (expected 1: auto-created?)",
            "Ordering needs one partition: ask an admin to delete and recreate them with 1 partition.",
            "warn",
        )
    if missing:
        raise _Failed(f"missing: {', '.join(missing)}", "Nothing to do: they are created on join.", "warn")
    return f"all {len(specs)} group topics exist"


async def _probe(manager: tp.TopicManager, settings: GroupSettings) -> str:
    """Create a scratch topic, produce one record and read it back: the path every task takes."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    name = tp.topic(settings.name, f"probe.{uuid.uuid4().hex[:12]}")
    await manager.ensure([tp.TopicSpec(name, 1, tp.HOUR_MS)])
    producer = AIOKafkaProducer(**kc.producer_kwargs(settings))
    consumer = AIOKafkaConsumer(**kc.consumer_kwargs(settings, None, earliest=True))
    try:
        await producer.start()
        await consumer.start()
        consumer.assign([TopicPartition(name, 0)])
        token = uuid.uuid4().hex.encode()
        start = time.monotonic()
        await producer.send_and_wait(name, token, key=b"probe")
        produced = time.monotonic()
        while (await consumer.getone()).value != token:
            pass
        done = time.monotonic()
    finally:
        await _best_effort(producer.stop(), consumer.stop(), manager.delete([name]))
    return f"round trip {(done - start) * 1000:.1f} ms (produce {(produced - start) * 1000:.1f} ms) via {name}"


async def _best_effort(*steps: Awaitable[Any]) -> None:
    """Cleanup, each step bounded: a scratch topic left behind is harmless, a hung report is not."""
    for step in steps:
        try:
            await asyncio.wait_for(step, 2)
        except Exception:
            continue


async def _kafka_checks(
    settings: GroupSettings, kwargs: dict[str, Any], reachable: list[tuple[str, int]], probe: bool, timeout: float
) -> AsyncGenerator[Check, None]:
    """Metadata (with SASL as part of the handshake), then group topics and the probe."""
    auth_error: Exception | None = None

    async def metadata() -> str:
        nonlocal auth_error
        try:
            conn = await _connect(kwargs, reachable, timeout)
        except Exception as exc:
            if type(exc).__name__ not in _AUTH_ERRORS:
                raise
            auth_error = exc
            raise _Failed("not reached: authentication failed (see SASL)", status="skip") from exc
        try:
            return await _metadata(conn, timeout)
        finally:
            conn.close()

    meta = await _timed(METADATA, timeout, metadata)
    yield meta
    if settings.security_protocol in kc.SASL_PROTOCOLS:
        yield _sasl_check(settings, auth_error, meta)
    if meta.status in ("fail", "skip"):
        yield Check(TOPICS, "skip", "no working Kafka connection")
        yield Check(PROBE, "skip", "no working Kafka connection")
        return
    manager = tp.TopicManager(settings, timeout=timeout)
    try:
        yield await _timed(TOPICS, timeout, lambda: _group_topics(manager, settings))
        if probe:
            yield await _timed(PROBE, timeout, lambda: _probe(manager, settings))
        else:
            yield Check(PROBE, "skip", "not requested")
    finally:
        await _best_effort(manager.stop())


# -- the report ------------------------------------------------------------------------------------------


def _prepare(settings: GroupSettings) -> tuple[Check, ssl.SSLContext | None, dict[str, Any] | None]:
    """Build the TLS context and the client kwargs once; a ConfigError becomes a failed first check."""
    context = None
    try:
        if settings.security_protocol in kc.SSL_PROTOCOLS:
            context = kc.ssl_context(settings)
        kwargs = dict(kc.client_kwargs(settings))
    except ConfigError as exc:
        return Check("Settings", "fail", exc.message, exc.fix), context, None
    info = kc.describe(settings)
    who = f" as {info['sasl_username']} ({info['sasl_mechanism']})" if "sasl_username" in info else ""
    line = f"{info['security_protocol']} to {', '.join(info['bootstrap_servers'])}{who}, client id {info['client_id']}"
    return Check("Settings", "ok", line), context, kwargs


async def run_checks(
    settings: GroupSettings, *, probe: bool = True, timeout: float = 5.0
) -> AsyncGenerator[Check, None]:
    """Yield each check as it completes: settings; DNS, TCP and TLS per bootstrap server; then Kafka metadata,
    SASL, group topics and (when `probe`) a produce/consume round trip. Each is bounded by `timeout` seconds
    (the probe's cleanup may add up to a few seconds). A dialog that is closed early should `aclose()` it,
    which closes any Kafka client still open."""
    client = settings.client.model_copy(update={"request_timeout_ms": max(1000, int(timeout * 1000))})
    settings = settings.model_copy(update={"client": client})
    first, context, kwargs = _prepare(settings)
    yield first
    tls = settings.security_protocol in kc.SSL_PROTOCOLS
    reachable: list[tuple[str, int]] = []
    for server in settings.bootstrap_servers:
        async for check in _per_server(server, context, tls, timeout):
            yield check
            if check.name.startswith("TLS" if tls else "TCP") and check.status in ("ok", "warn"):
                reachable.append(kc.split_server(server))
    if kwargs is None or not reachable:
        reason = "the settings are incomplete (see Settings)" if kwargs is None else "no bootstrap server is reachable"
        names = [METADATA, *([SASL] if settings.security_protocol in kc.SASL_PROTOCOLS else []), TOPICS, PROBE]
        for name in names:
            yield Check(name, "skip", reason)
        return
    async with contextlib.aclosing(_kafka_checks(settings, kwargs, reachable, probe, timeout)) as kafka:
        async for check in kafka:  # aclosing: closing this report early stops the admin client now, not at GC
            yield check


# -- output ----------------------------------------------------------------------------------------------


def overall(checks: Iterable[Check]) -> Status:
    """The worst status among the checks (skips do not count); "ok" when there are none."""
    return max((c.status for c in checks if c.status != "skip"), key=_RANK.__getitem__, default="ok")


def summarize(checks: Iterable[Check]) -> str:
    """Plain text for the CLI and logs: one line per check, the hint under anything not ok, then a verdict."""
    items = list(checks)
    lines = []
    for check in items:
        lines.append(f"{_SYMBOL[check.status]} {check.name}: {check.detail} ({check.duration_ms:.0f} ms)")
        if check.hint and check.status in ("warn", "fail"):
            lines.append(f"    → {check.hint}")
    tally = ", ".join(f"{n} {s}" for s in ("ok", "warn", "fail", "skip") if (n := sum(c.status == s for c in items)))
    lines.append(f"Result: {overall(items).upper()} ({tally or 'no checks'})")
    return "\n".join(lines)


def to_json(checks: Iterable[Check]) -> str:
    items = list(checks)
    return json.dumps({"status": overall(items), "checks": [c.to_dict() for c in items]}, ensure_ascii=False)
