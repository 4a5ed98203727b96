"""Group settings -> aiokafka kwargs: security protocols, the keyring password, and that it never leaks."""

from __future__ import annotations

import datetime as dt
import ssl
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.group import kafka_config as kc
from core.group.envelope import MAX_RECORD_BYTES
from core.settings import GroupSettings

SECRET = "s3cr3t-Pa55word!"


def _write_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key (PEM), good enough to load into an SSLContext."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _settings(**values: object) -> GroupSettings:
    base: dict[str, object] = {"name": "team", "bootstrap_servers": ["k1:9092", "k2:9093"], "agent_name": "Ada PC"}
    base.update(values)
    return GroupSettings(**base)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    cert, key = _write_cert(tmp_path)
    return {"ssl_cafile": str(cert), "ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def test_plaintext_has_no_tls_and_no_sasl() -> None:
    kwargs = kc.client_kwargs(_settings())
    assert kwargs == {
        "bootstrap_servers": ["k1:9092", "k2:9093"],
        "security_protocol": "PLAINTEXT",
        "request_timeout_ms": 30_000,
        "client_id": "shoal-Ada-PC",
    }
    assert "ssl_context" not in kwargs and "sasl_mechanism" not in kwargs


def test_ssl_builds_a_verifying_context(tls_files: dict[str, str]) -> None:
    kwargs = kc.client_kwargs(_settings(security_protocol="SSL", **tls_files))
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True and context.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_plain_password" not in kwargs


def test_ssl_without_files_uses_system_cas_and_check_hostname_can_be_off() -> None:
    kwargs = kc.client_kwargs(_settings(security_protocol="SSL", ssl_check_hostname=False))
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].check_hostname is False


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_mechanisms(protocol: str, mechanism: str) -> None:
    kc.set_group_password("team", SECRET)
    settings = _settings(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="ada")
    kwargs = kc.client_kwargs(settings)
    assert kwargs["security_protocol"] == protocol
    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["sasl_plain_username"] == "ada"
    assert kwargs["sasl_plain_password"] == SECRET
    assert ("ssl_context" in kwargs) == (protocol == "SASL_SSL")


def test_password_from_keyring_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_GROUP_PASSWORD", "from-env")
    settings = _settings()
    assert kc.group_password(settings) == "from-env"
    kc.set_group_password("team", "from-keyring")
    assert kc.group_password(settings) == "from-keyring"
    assert kc.group_password(_settings(name="other")) == "from-env"  # per group in the keyring


def test_password_missing_everywhere() -> None:
    settings = _settings(security_protocol="SASL_SSL", sasl_username="ada")
    assert kc.group_password(settings) is None
    with pytest.raises(ConfigError) as caught:
        kc.client_kwargs(settings)
    assert "shoal group set-password" in caught.value.fix and "SHOAL_GROUP_PASSWORD" in caught.value.fix


def test_sasl_without_username() -> None:
    with pytest.raises(ConfigError, match="sasl_username"):
        kc.client_kwargs(_settings(security_protocol="SASL_PLAINTEXT"))


def test_keyring_failure_falls_back_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.errors import KeyringError

    def broken(*_args: object) -> None:
        raise KeyringError("locked")

    monkeypatch.setattr(keyring, "get_password", broken)
    monkeypatch.setattr(keyring, "set_password", broken)
    monkeypatch.setenv("SHOAL_GROUP_PASSWORD", "env-pw")
    assert kc.group_password(_settings()) == "env-pw"
    with pytest.raises(ConfigError, match="keyring"):
        kc.set_group_password("team", "x")


@pytest.mark.parametrize("setting", ["ssl_cafile", "ssl_certfile", "ssl_keyfile"])
def test_missing_tls_file_names_setting_and_path(tmp_path: Path, tls_files: dict[str, str], setting: str) -> None:
    missing = tmp_path / "nope" / "file.pem"
    files = {**tls_files, setting: str(missing)}
    with pytest.raises(ConfigError) as caught:
        kc.client_kwargs(_settings(security_protocol="SASL_SSL", sasl_username="u", **files))
    assert f"group.{setting}" in caught.value.message and str(missing) in caught.value.message


def test_unreadable_tls_file_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="TLS files"):
        kc.client_kwargs(_settings(security_protocol="SSL", ssl_cafile=str(junk)))


def test_key_without_certificate(tls_files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="ssl_certfile"):
        kc.client_kwargs(_settings(security_protocol="SSL", ssl_keyfile=tls_files["ssl_keyfile"]))


def test_producer_kwargs() -> None:
    settings = _settings(client={"linger_ms": 5, "max_request_size": 2_000_000})
    kwargs = kc.producer_kwargs(settings)
    assert kwargs["acks"] == "all" and kwargs["enable_idempotence"] is False
    assert kwargs["linger_ms"] == 5 and kwargs["max_request_size"] == 2_000_000
    assert kwargs["bootstrap_servers"] == ["k1:9092", "k2:9093"]


@pytest.mark.parametrize(("earliest", "reset"), [(True, "earliest"), (False, "latest")])
def test_consumer_kwargs(earliest: bool, reset: str) -> None:
    settings = _settings(client={"session_timeout_ms": 2000, "heartbeat_interval_ms": 500, "fetch_max_wait_ms": 10})
    kwargs = kc.consumer_kwargs(settings, "shoal.team.agent.x", earliest=earliest)
    assert kwargs["group_id"] == "shoal.team.agent.x"
    assert kwargs["auto_offset_reset"] == reset
    assert kwargs["enable_auto_commit"] is False
    assert (kwargs["session_timeout_ms"], kwargs["heartbeat_interval_ms"], kwargs["fetch_max_wait_ms"]) == (
        2000,
        500,
        10,
    )
    assert kwargs["max_partition_fetch_bytes"] > MAX_RECORD_BYTES
    assert kc.consumer_kwargs(settings, None, earliest=True)["group_id"] is None


def test_fetch_size_follows_a_raised_record_limit() -> None:
    kwargs = kc.consumer_kwargs(_settings(client={"max_request_size": 80_000_000}), None, earliest=True)
    assert kwargs["max_partition_fetch_bytes"] > 80_000_000
    assert kwargs["fetch_max_bytes"] >= kwargs["max_partition_fetch_bytes"]


def test_kwargs_are_accepted_by_aiokafka() -> None:
    """The names must be real constructor parameters (aiokafka rejects unknown keywords)."""
    import inspect

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    kc.set_group_password("team", SECRET)
    settings = _settings(security_protocol="SASL_SSL", sasl_username="ada")
    for cls, kwargs in [
        (AIOKafkaProducer, kc.producer_kwargs(settings)),
        (AIOKafkaConsumer, kc.consumer_kwargs(settings, "g", earliest=True)),
        (AIOKafkaAdminClient, kc.admin_kwargs(settings)),
    ]:
        assert set(kwargs) <= set(inspect.signature(cls.__init__).parameters), cls.__name__


def test_password_never_in_repr_or_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    kc.set_group_password("team", SECRET)
    settings = _settings(security_protocol="SASL_SSL", sasl_username="ada")
    outputs = [
        kc.client_kwargs(settings),
        kc.producer_kwargs(settings),
        kc.consumer_kwargs(settings, "g", earliest=False),
        kc.admin_kwargs(settings),
        kc.describe(settings),
    ]
    for value in outputs:
        assert SECRET not in repr(value) and SECRET not in str(value) and SECRET not in f"{value}"
    assert kc.describe(settings)["sasl_password"] == "set"
    assert kc.client_kwargs(settings)["sasl_plain_password"] == SECRET  # still usable by aiokafka
    monkeypatch.delenv("SHOAL_GROUP_PASSWORD", raising=False)
    assert kc.describe(_settings(name="other", security_protocol="SASL_SSL"))["sasl_password"] == "missing"


def test_describe_plaintext_has_no_secrets_section() -> None:
    described = kc.describe(_settings())
    assert described["security_protocol"] == "PLAINTEXT"
    assert not any(key.startswith(("sasl", "ssl")) for key in described)


def test_module_import_does_not_import_aiokafka() -> None:
    import subprocess

    modules = "core.group.kafka_config, core.group.topics, core.group.kshark"
    code = f"import sys, {modules}; print('aiokafka' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
