"""`shoal kshark` against local TLS servers with throwaway certificates made here by `cryptography` (Tansu
speaks no TLS): a TLS port used with PLAINTEXT, certificate names, expiry, an unknown CA, a TLS listener that
is not Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.group import kshark as ks
from core.settings import GroupSettings
from tests.group.test_kshark import SLACK_MS, TIMEOUT, _assert_rest_skipped, _run, _settings


def _certificate(folder: Path, names: list[str], days: float) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days, hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now - dt.timedelta(days=1), not_after - dt.timedelta(days=30)))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{names[0]}-{days}.pem", folder / f"{names[0]}-{days}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextlib.asynccontextmanager
async def _tls_server(cert: Path, key: Path) -> AsyncIterator[int]:
    """An ssl-module server socket on loopback: completes TLS handshakes, then says nothing (like a broker
    waiting for a Kafka request); a plaintext client's bytes make it close the connection."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def _tls_check(settings: GroupSettings) -> ks.Check:
    async with contextlib.aclosing(ks.run_checks(settings, probe=False, timeout=TIMEOUT)) as checks:
        async for check in checks:
            if check.kind == "tls":
                assert check.duration_ms <= TIMEOUT * 1000 + SLACK_MS
                return check
    raise AssertionError("no TLS check")


def _ssl(port: int, cert: Path, **values: Any) -> GroupSettings:
    return _settings(f"localhost:{port}", security_protocol="SSL", ssl_cafile=str(cert), **values)


async def test_plaintext_client_against_a_tls_port(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost"], days=300)
    async with _tls_server(cert, key) as port:
        checks = await _run(_settings(f"127.0.0.1:{port}"))
    kafka = checks[f"Kafka 127.0.0.1:{port}"]
    assert kafka.status == "fail" and "the server speaks TLS" in kafka.detail
    assert "group.security_protocol to SSL" in kafka.hint
    _assert_rest_skipped(checks, "no bootstrap server answers")


async def test_certificate_ok_then_near_expiry_warns(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost", "kafka.test"], days=300)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_ssl(port, cert))
    assert check.status == "ok" and "TLSv1" in check.detail and "expires in 300 days" in check.detail
    assert check.data["hostname_matches"] and check.data["certificate"]["names"] == [
        "localhost",
        "kafka.test",
        "127.0.0.1",
    ]

    cert, key = _certificate(tmp_path, ["localhost", "kafka.test"], days=5)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_ssl(port, cert))
    assert check.status == "warn" and "CN=localhost" in check.detail and "expires in 5 days" in check.detail
    assert "renew" in check.hint


async def test_an_expired_certificate_fails_with_its_dates(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost"], days=-3)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_ssl(port, cert))
    assert check.status == "fail" and "certificate has expired" in check.detail
    assert "expired 2 days ago" in check.detail or "expired 3 days ago" in check.detail
    assert "renew" in check.hint and check.data["certificate"]["days_left"] < 0


async def test_a_certificate_for_another_name(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["other.example"], days=300)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_ssl(port, cert))
        assert check.status == "fail" and "mismatch" in check.detail and "names other.example" in check.detail
        assert "other.example" in check.hint and "ssl_check_hostname" in check.hint
        lenient = await _tls_check(_ssl(port, cert, ssl_check_hostname=False))
    assert lenient.status == "warn" and not lenient.data["hostname_matches"]
    assert "ssl_check_hostname is off" in lenient.hint


async def test_an_unknown_ca_names_the_setting(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost"], days=300)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_settings(f"localhost:{port}", security_protocol="SSL"))
    assert check.status == "fail" and "certificate verification failed" in check.detail
    assert "issued by CN=localhost" in check.detail and "group.ssl_cafile" in check.hint


async def test_a_tls_listener_that_does_not_speak_kafka(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost"], days=300)
    async with _tls_server(cert, key) as port:
        checks = await _run(_ssl(port, cert), probe=False)
    kafka = checks[f"Kafka localhost:{port}"]
    assert checks[f"TLS localhost:{port}"].status == "ok"
    assert kafka.status == "fail" and "TLS listener" in kafka.detail and "group.ssl_certfile" in kafka.hint


# -- the command line --------------------------------------------------------------------------------------
