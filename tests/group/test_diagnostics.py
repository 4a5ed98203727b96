"""The "Test connection" report against the real broker, dead ports, bad names and TLS servers.

Tansu speaks neither TLS nor SASL, so certificate details are checked against a local asyncio TLS server
with throwaway certificates, and the SASL path against Tansu's refusal of the SASL handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.group import diagnostics as dg
from core.group import kafka_config as kc
from core.group import topics as tp
from core.settings import GroupSettings
from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker

TIMEOUT = 1.0
SLACK_MS = 400  # scheduling noise on a shared 2-core machine


def _settings(*servers: str, **values: Any) -> GroupSettings:
    name = values.pop("name", f"d{uuid.uuid4().hex[:10]}")
    return GroupSettings(name=name, bootstrap_servers=list(servers), client=dict(TEST_CLIENT_SETTINGS), **values)


async def _run(settings: GroupSettings, **kwargs: Any) -> dict[str, dg.Check]:
    checks = [check async for check in dg.run_checks(settings, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)]
    assert len({c.name for c in checks}) == len(checks), "check names are unique"
    return {c.name: c for c in checks}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_bounded(checks: dict[str, dg.Check], timeout: float = TIMEOUT) -> None:
    for check in checks.values():
        assert check.duration_ms <= timeout * 1000 + SLACK_MS, check


# -- against the real broker -------------------------------------------------------------------------------


async def test_all_ok_against_the_broker(kafka_broker: TansuBroker) -> None:
    settings = _settings(kafka_broker.bootstrap)
    await tp.ensure_topics(settings, tp.group_topics(settings))
    checks = await _run(settings, timeout=5.0)
    host, port = kc.split_server(kafka_broker.bootstrap)
    assert list(checks) == [
        "Settings",
        f"DNS {host}",
        f"TCP {host}:{port}",
        "Kafka metadata",
        "Group topics",
        "Produce/consume probe",
    ]
    assert {c.status for c in checks.values()} == {"ok"}, dg.summarize(checks.values())
    assert "1 broker(s)" in checks["Kafka metadata"].detail
    assert "round trip" in checks["Produce/consume probe"].detail
    async with tp.TopicManager(settings) as manager:
        remaining = await manager.existing()
    assert not [t for t in remaining if t.startswith(f"group.{settings.name}.probe.")], "scratch topic deleted"
    assert dg.overall(checks.values()) == "ok"


async def test_missing_group_topics_warn(kafka_broker: TansuBroker) -> None:
    checks = await _run(_settings(kafka_broker.bootstrap), probe=False)
    topics = checks["Group topics"]
    assert topics.status == "warn" and "announce" in topics.detail and "created on join" in topics.hint
    assert checks["Produce/consume probe"].status == "skip"
    _assert_bounded(checks)


async def test_auto_created_single_partition_topic_warns(kafka_broker: TansuBroker) -> None:
    settings = _settings(kafka_broker.bootstrap)
    announce = tp.topic(settings.name, "announce")
    await tp.ensure_topics(settings, [tp.TopicSpec(announce, 4, 60_000)])
    checks = await _run(settings, probe=False)
    assert checks["Group topics"].status == "warn"
    assert f"{announce} has 4 partitions" in checks["Group topics"].detail


async def test_sasl_against_a_listener_without_sasl(kafka_broker: TansuBroker) -> None:
    kc.set_group_password("sasl-group", "pw")
    settings = _settings(kafka_broker.bootstrap, name="sasl-group", security_protocol="SASL_PLAINTEXT")
    settings.sasl_username = "ada"
    checks = await _run(settings)
    assert checks["Kafka metadata"].status == "skip"
    assert checks["SASL authentication"].status == "fail"
    assert "'ada'" in checks["SASL authentication"].detail and "sasl_mechanism" in checks["SASL authentication"].hint
    assert checks["Group topics"].status == checks["Produce/consume probe"].status == "skip"
    _assert_bounded(checks)


async def test_tls_against_the_plaintext_port(kafka_broker: TansuBroker) -> None:
    checks = await _run(_settings(kafka_broker.bootstrap, security_protocol="SSL"))
    host, port = kc.split_server(kafka_broker.bootstrap)
    tls = checks[f"TLS {host}:{port}"]
    assert tls.status == "fail" and "PLAINTEXT" in tls.hint
    assert checks[f"TCP {host}:{port}"].status == "ok"
    assert checks["Kafka metadata"].status == "skip" and "reachable" in checks["Kafka metadata"].detail
    _assert_bounded(checks)


async def test_closing_the_report_early_stops_the_admin_client(
    kafka_broker: TansuBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[tp.TopicManager] = []
    original = tp.TopicManager.stop

    async def recording_stop(self: tp.TopicManager) -> None:
        stopped.append(self)
        await original(self)

    monkeypatch.setattr(tp.TopicManager, "stop", recording_stop)
    report = dg.run_checks(_settings(kafka_broker.bootstrap), timeout=TIMEOUT)
    async for check in report:
        if check.name == "Group topics":
            break
    assert not stopped
    await report.aclose()  # what a dialog does when the user closes it mid-run
    assert stopped and not stopped[0].started


# -- unreachable servers -----------------------------------------------------------------------------------


async def test_closed_port_fails_tcp_and_skips_kafka() -> None:
    port = _closed_port()
    checks = await _run(_settings(f"127.0.0.1:{port}"))
    tcp = checks[f"TCP 127.0.0.1:{port}"]
    assert tcp.status == "fail" and "Nothing listens" in tcp.hint
    for name in ("Kafka metadata", "Group topics", "Produce/consume probe"):
        assert checks[name].status == "skip" and "no bootstrap server is reachable" in checks[name].detail
    assert dg.overall(checks.values()) == "fail"
    _assert_bounded(checks)


async def test_unknown_host_fails_dns_and_skips_tcp(kafka_broker: TansuBroker) -> None:
    checks = await _run(_settings("no-such-host.invalid:9092", kafka_broker.bootstrap), probe=False)
    assert checks["DNS no-such-host.invalid"].status == "fail"
    assert "bootstrap_servers" in checks["DNS no-such-host.invalid"].hint
    assert checks["TCP no-such-host.invalid:9092"].status == "skip"
    assert checks["Kafka metadata"].status == "ok"  # the second server still answers
    _assert_bounded(checks)


async def test_incomplete_settings_still_check_the_network() -> None:
    port = _closed_port()
    settings = _settings(f"127.0.0.1:{port}", security_protocol="SASL_SSL", sasl_username="ada")
    checks = await _run(settings)
    assert checks["Settings"].status == "fail" and "set-password" in checks["Settings"].hint
    assert checks[f"TCP 127.0.0.1:{port}"].status == "fail"
    assert checks["SASL authentication"].status == "skip"


async def test_bad_address_is_reported() -> None:
    checks = await _run(_settings("host:notaport"))
    assert checks["Address host:notaport"].status == "fail"


# -- TLS details against a local TLS server ----------------------------------------------------------------


def _certificate(folder: Path, names: list[str], days: int) -> tuple[Path, Path]:
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days, hours=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{names[0]}.pem", folder / f"{names[0]}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextlib.asynccontextmanager
async def _tls_server(cert: Path, key: Path) -> AsyncIterator[int]:
    """Completes TLS handshakes, then says nothing (like a broker waiting for a Kafka request)."""
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


async def _tls_check(settings: GroupSettings, port: int) -> dg.Check:
    async with contextlib.aclosing(dg.run_checks(settings, probe=False, timeout=TIMEOUT)) as checks:
        async for check in checks:
            if check.name.startswith("TLS"):
                assert check.duration_ms <= TIMEOUT * 1000 + SLACK_MS
                return check
    raise AssertionError("no TLS check")


async def test_tls_reports_certificate_and_warns_before_expiry(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost", "kafka.test"], days=5)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_settings(f"localhost:{port}", security_protocol="SSL", ssl_cafile=str(cert)), port)
    assert check.status == "warn", check
    assert "CN=localhost" in check.detail and "kafka.test" in check.detail and "expires in 5 days" in check.detail
    assert "renew" in check.hint


async def test_tls_ok_with_a_long_lived_certificate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost"], days=300)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_settings(f"localhost:{port}", security_protocol="SSL", ssl_cafile=str(cert)), port)
    assert check.status == "ok" and "TLSv1" in check.detail


async def test_tls_unknown_ca_names_the_setting(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["localhost"], days=300)
    async with _tls_server(cert, key) as port:
        check = await _tls_check(_settings(f"localhost:{port}", security_protocol="SSL"), port)
    assert check.status == "fail" and "certificate verification failed" in check.detail
    assert "group.ssl_cafile" in check.hint


async def test_tls_hostname_mismatch(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["other.example"], days=300)
    settings = _settings("", security_protocol="SSL", ssl_cafile=str(cert))
    async with _tls_server(cert, key) as port:
        settings.bootstrap_servers = [f"localhost:{port}"]
        check = await _tls_check(settings, port)
        assert check.status == "fail" and "mismatch" in check.detail and "ssl_check_hostname" in check.hint
        settings.ssl_check_hostname = False
        assert (await _tls_check(settings, port)).status == "ok"


# -- output ------------------------------------------------------------------------------------------------


def test_summarize_and_json() -> None:
    checks = [
        dg.Check("DNS a", "ok", "a → 1.2.3.4", duration_ms=1.2),
        dg.Check("TCP a:1", "fail", "refused", "start the broker", 0.4),
        dg.Check("Kafka metadata", "skip", "no bootstrap server is reachable"),
    ]
    text = dg.summarize(checks)
    assert "✓ DNS a: a → 1.2.3.4" in text and "→ start the broker" in text
    assert text.splitlines()[-1] == "Result: FAIL (1 ok, 1 fail, 1 skip)"
    data = json.loads(dg.to_json(checks))
    assert data["status"] == "fail" and data["checks"][1]["hint"] == "start the broker"
    assert dg.overall([dg.Check("x", "skip", "")]) == "ok"
    assert dg.overall([dg.Check("x", "ok", ""), dg.Check("y", "warn", "")]) == "warn"


@pytest.mark.parametrize(
    ("server", "expected"),
    [("k1:9093", ("k1", 9093)), ("k1", ("k1", 9092)), ("[::1]:9094", ("::1", 9094)), ("[::1]", ("::1", 9092))],
)
def test_split_server(server: str, expected: tuple[str, int]) -> None:
    assert kc.split_server(server) == expected
