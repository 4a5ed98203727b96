"""Per bootstrap server: DNS, TCP, TLS (certificate names and expiry) and whether the listener speaks Kafka in
the protocol the settings chose.

The classic mix-up gets a positive diagnosis instead of a timeout: a TLS client at a plaintext listener waits
for a handshake the broker never answers (the broker waits for the rest of a "request" hundreds of megabytes
long), so after `SNIFF_AFTER` seconds without a handshake a plaintext ApiVersions request is tried on a second
connection; a Kafka answer means "the server does not speak TLS". The reverse (plaintext at a TLS listener)
shows as a TLS alert or a closed connection, confirmed by a TLS handshake that succeeds. Servers are checked
concurrently (so several dead ones cost one timeout, not one each) and reported in the order configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from core import paths
from core.errors import ConfigError
from core.group import kafka_config as kc
from core.group.kshark import certs, wire
from core.group.kshark.report import Budget, Check, Failed, Passed, skipped, timed

if TYPE_CHECKING:
    from core.settings import GroupSettings

SNIFF_AFTER = 1.0  # a real TLS handshake takes milliseconds; a plaintext listener never finishes one
SNIFF_LIMIT = 1.0
NOT_TLS_HINT = (
    "The server does not speak TLS on this port: set group.security_protocol to PLAINTEXT (or SASL_PLAINTEXT), "
    "or use the port of the broker's SSL listener."
)
IS_TLS_HINT = (
    "The server speaks TLS on this port: set group.security_protocol to SSL (or SASL_SSL), and group.ssl_cafile "
    "if its certificate is not signed by a CA this system trusts."
)


@dataclass(frozen=True)
class Target:
    """What every per-server check needs: the settings, the verifying TLS context (None when the TLS settings
    are invalid), whether TLS is on, the run's budget and the client id to introduce ourselves with."""

    settings: GroupSettings
    context: ssl.SSLContext | None
    tls: bool
    budget: Budget
    client_id: str


# -- the steps ---------------------------------------------------------------------------------------------


async def _dns(host: str, port: int) -> Passed:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Failed(
            f"{host} does not resolve ({exc.strerror})",
            "Check the spelling in group.bootstrap_servers, your DNS, and whether the cluster needs a VPN.",
        ) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    more = " …" if len(addresses) > 4 else ""
    return Passed(f"{host} → {', '.join(addresses[:4])}{more}", {"addresses": addresses})


async def _tcp(host: str, port: int) -> Passed:
    start = time.monotonic()
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        raise Failed(
            f"cannot connect to {host}:{port} ({why})",
            "Nothing listens there: is the broker running, and is the port right?"
            if isinstance(exc, ConnectionRefusedError)
            else "The host is unreachable from here: check the network, VPN and firewall.",
        ) from exc
    elapsed = (time.monotonic() - start) * 1000
    peer = writer.get_extra_info("peername")
    writer.close()
    where = f"{peer[0]}:{peer[1]}" if peer else f"{host}:{port}"
    return Passed(f"connected to {where} in {elapsed:.1f} ms", {"peer": where, "connect_ms": round(elapsed, 2)})


async def _plaintext_answer(host: str, port: int, client_id: str) -> wire.Answer | None:
    """A plaintext ApiVersions on a new connection, within SNIFF_LIMIT; None when nothing usable came back."""
    try:
        async with asyncio.timeout(SNIFF_LIMIT):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                return await wire.ask(reader, writer, client_id)
            finally:
                writer.close()
    except (OSError, EOFError, TimeoutError):
        return None


async def _unverified_certificate(host: str, port: int, target: Target) -> certs.Certificate | None:
    """The server's certificate from a handshake that checks nothing, to describe what verification refused
    (or to show that a port speaks TLS at all). None when no handshake completes within SNIFF_LIMIT."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(OSError, ValueError, ssl.SSLError):
        if target.settings.ssl_certfile:
            keyfile = paths.expand(target.settings.ssl_keyfile) if target.settings.ssl_keyfile else None
            context.load_cert_chain(paths.expand(target.settings.ssl_certfile), keyfile)
    try:
        async with asyncio.timeout(SNIFF_LIMIT):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except (OSError, EOFError, TimeoutError):
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return certs.parse(der) if der else None
    except ValueError:
        return None
    finally:
        writer.close()


def _not_tls(answer: wire.Answer) -> NoReturn:
    raise Failed(
        f"the server does not speak TLS: no TLS handshake, but a plaintext Kafka request was answered "
        f"(ApiVersions: {answer.summary()})",
        NOT_TLS_HINT,
        data={"speaks": "plaintext-kafka"},
    )


async def _handshake_failed(host: str, port: int, target: Target, exc: BaseException) -> NoReturn:
    detail, hint = kc.explain_tls_error(exc, host)
    if not isinstance(exc, ssl.SSLCertVerificationError):
        answer = await _plaintext_answer(host, port, target.client_id)
        if answer is not None and answer.speaks == "kafka":
            _not_tls(answer)
        raise Failed(detail, hint) from exc
    cert = await _unverified_certificate(host, port, target)
    if cert is None:
        raise Failed(detail, hint) from exc
    detail += f"; the certificate: {certs.describe(cert)}, issued by {cert.issuer}"
    if not certs.matches(cert, host) and target.settings.ssl_check_hostname:
        hint = (
            f"The certificate is for {', '.join(cert.names) or 'no names'}, not {host}: dial one of those names, "
            "or turn off group.ssl_check_hostname (less safe)."
        )
    raise Failed(detail, hint, data={"certificate": cert.to_dict()}) from exc


async def _handshake(host: str, port: int, target: Target) -> asyncio.StreamWriter:
    """The verifying handshake; after SNIFF_AFTER without one, a plaintext Kafka answer ends it as a mismatch."""
    assert target.context is not None
    handshake = asyncio.ensure_future(asyncio.open_connection(host, port, ssl=target.context, server_hostname=host))
    try:
        done, _ = await asyncio.wait({handshake}, timeout=SNIFF_AFTER)
        if not done:
            answer = await _plaintext_answer(host, port, target.client_id)
            if answer is not None and answer.speaks == "kafka" and not handshake.done():
                _not_tls(answer)
        try:
            _, writer = await handshake
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            await _handshake_failed(host, port, target, exc)
        return writer
    finally:
        if not handshake.done():
            handshake.cancel()


async def _tls(host: str, port: int, target: Target) -> Passed:
    writer = await _handshake(host, port, target)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        cert = certs.parse(ssl_object.getpeercert(binary_form=True) or b"")
        version, cipher = ssl_object.version(), ssl_object.cipher()
    finally:
        writer.close()
    status, hint = certs.judge(cert, host, check_hostname=target.settings.ssl_check_hostname)
    detail = f"{version}, {certs.describe(cert)}"
    data = {"version": version, "cipher": cipher[0] if cipher else None, "certificate": cert.to_dict()}
    data["hostname_matches"] = certs.matches(cert, host)
    if status != "ok":
        raise Failed(detail, hint, status, data)
    return Passed(detail, data)


async def _kafka(host: str, port: int, target: Target) -> Passed:
    """ApiVersions over the chosen transport: proves a Kafka broker listens there in that protocol."""
    tls = target.context if target.tls else None
    reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None)
    try:
        answer = await wire.ask(reader, writer, target.client_id)
    except (ConnectionError, EOFError):
        answer = wire.Answer("closed", {})
    finally:
        writer.close()
    if answer.speaks == "kafka":
        data = {"apis": len(answer.apis), "error_code": answer.error_code}
        return Passed(f"answers Kafka requests (ApiVersions: {answer.summary()})", data)
    what = "closed the connection" if answer.speaks == "closed" else f"answered {answer.first_bytes.hex(' ')}"
    if target.tls:
        raise Failed(
            f"the TLS listener {what} instead of answering a Kafka request",
            "The listener may want a client certificate (group.ssl_certfile), or it is not Kafka behind TLS: "
            "check the port with the cluster's admin.",
        )
    if answer.speaks == "tls" or await _unverified_certificate(host, port, target) is not None:
        how = "with a TLS alert" if answer.speaks == "tls" else "by closing, and a TLS handshake there succeeds"
        raise Failed(f"the server speaks TLS: it answered a plaintext Kafka request {how}", IS_TLS_HINT)
    raise Failed(
        f"not a Kafka listener: it {what} instead of answering a Kafka request",
        "Check the port in group.bootstrap_servers: something other than a Kafka broker listens there.",
    )


# -- one server, then all of them --------------------------------------------------------------------------


def _usable(check: Check) -> bool:
    return check.status in ("ok", "warn")


async def server_checks(server: str, target: Target) -> AsyncGenerator[Check, None]:
    """DNS, TCP, TLS (for SSL protocols) and Kafka for one server; a failure skips the steps after it."""
    try:
        host, port = kc.split_server(server)
    except ConfigError as exc:
        yield Check(f"Address {server}", "fail", exc.message, exc.fix, kind="address", server=server)
        return
    where, budget = f"{host}:{port}", target.budget
    dns = await timed(f"DNS {host}", "dns", budget, lambda: _dns(host, port), where)
    yield dns
    last: Check | None = None
    if _usable(dns):
        last = await timed(f"TCP {where}", "tcp", budget, lambda: _tcp(host, port), where)
        yield last
    else:
        yield skipped(f"TCP {where}", "tcp", "DNS lookup failed", where)
    reason = "DNS lookup failed" if last is None else "no TCP connection"
    if target.tls:
        if last is None or not _usable(last):
            last = None
            yield skipped(f"TLS {where}", "tls", reason, where)
        elif target.context is None:
            last, reason = None, "the TLS settings are invalid (see Settings)"
            yield skipped(f"TLS {where}", "tls", reason, where)
        else:
            last = await timed(f"TLS {where}", "tls", budget, lambda: _tls(host, port, target), where)
            yield last
            reason = "no TLS session"
    if last is not None and _usable(last):
        yield await timed(f"Kafka {where}", "kafka", budget, lambda: _kafka(host, port, target), where)
    else:
        yield skipped(f"Kafka {where}", "kafka", reason, where)


async def all_servers(servers: list[str], target: Target) -> AsyncGenerator[Check, None]:
    """Every server's checks, run concurrently and yielded in the configured order as they complete.
    Closing this early cancels the servers still being checked."""
    queues: list[asyncio.Queue[Check | None]] = [asyncio.Queue() for _ in servers]

    async def pump(server: str, queue: asyncio.Queue[Check | None]) -> None:
        try:
            async for check in server_checks(server, target):
                queue.put_nowait(check)
        finally:
            queue.put_nowait(None)

    tasks = [asyncio.create_task(pump(s, q), name=f"kshark-{s}") for s, q in zip(servers, queues, strict=True)]
    try:
        for queue in queues:
            while (check := await queue.get()) is not None:
                yield check
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
