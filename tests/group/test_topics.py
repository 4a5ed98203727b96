"""Group topics: the §5 table, explicit creation against the real broker, and the error paths (fake admin).

Compaction, AlterConfigs and ACLs do not exist on Tansu, so the compaction fallback and the permission
message are covered with a fake admin client; on a real Kafka cluster they follow the same code path.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.errors import ConfigError, NetworkError
from core.group import topics as tp
from core.settings import GroupSettings
from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker, free_port


def _settings(bootstrap: str, **values: Any) -> GroupSettings:
    name = values.pop("name", f"t{uuid.uuid4().hex[:10]}")
    return GroupSettings(name=name, bootstrap_servers=[bootstrap], client=dict(TEST_CLIENT_SETTINGS), **values)


# -- the table ---------------------------------------------------------------------------------------------


def test_group_topics_follow_the_protocol_table() -> None:
    settings = GroupSettings(
        name="team", partitions=3, retention_hours=2, audit_retention_hours=48, skills=[{"name": "summarize"}]
    )
    specs = {s.name: s for s in tp.group_topics(settings)}
    assert set(specs) == {
        "group.team.announce",
        "group.team.control",
        "group.team.requests",
        "group.team.responses",
        "group.team.progress",
        "group.team.traces",
        "group.team.memory",
        "group.team.audit",
        "group.team.claims",
        "group.team.skill.summarize.requests",
    }
    assert specs["group.team.announce"] == tp.TopicSpec("group.team.announce", 1, 7_200_000, compact=True)
    assert specs["group.team.control"].partitions == 1 and not specs["group.team.control"].compact
    assert specs["group.team.audit"].retention_ms == 48 * 3_600_000
    assert specs["group.team.requests"].partitions == 1 and specs["group.team.requests"].retention_ms == 7_200_000
    for read_in_full in ("responses", "progress", "memory", "claims"):
        assert specs[f"group.team.{read_in_full}"].partitions == 1
    assert specs["group.team.skill.summarize.requests"].partitions == 3
    assert specs["group.team.audit"].partitions == specs["group.team.traces"].partitions == 3
    assert tp.skill_topic("team", "x") == "group.team.skill.x.requests" == tp.skill_spec(settings, "x").name
    assert tp.topic("team", "memory") == "group.team.memory"
    assert specs["group.team.announce"].configs() == {"retention.ms": "7200000", "cleanup.policy": "compact"}
    assert specs["group.team.announce"].configs(compact=False) == {"retention.ms": "7200000"}


# -- against the real broker -------------------------------------------------------------------------------


async def test_creates_all_group_topics_with_their_partitions(kafka_broker: TansuBroker) -> None:
    settings = _settings(kafka_broker.bootstrap, partitions=3, skills=[{"name": "echo"}])
    specs = tp.group_topics(settings)
    async with tp.TopicManager(settings) as manager:
        created = await manager.ensure(specs)
        assert sorted(created) == sorted(s.name for s in specs)
        counts = await manager.partitions([s.name for s in specs])
        assert counts == {s.name: s.partitions for s in specs}
        assert counts[tp.topic(settings.name, "announce")] == 1
        assert counts[tp.topic(settings.name, "requests")] == 1
        assert counts[tp.topic(settings.name, "audit")] == counts[tp.skill_topic(settings.name, "echo")] == 3

        assert await manager.ensure(specs) == []  # idempotent
    assert await tp.ensure_topics(settings, specs) == []  # and with a one-off client


async def test_partitions_seen_by_a_client(kafka_broker: TansuBroker) -> None:
    from aiokafka import AIOKafkaProducer

    settings = _settings(kafka_broker.bootstrap, partitions=2)
    await tp.ensure_topics(settings, tp.group_topics(settings))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, request_timeout_ms=10_000)
    await producer.start()
    try:
        assert len(await producer.partitions_for(tp.topic(settings.name, "control"))) == 1
        assert len(await producer.partitions_for(tp.topic(settings.name, "traces"))) == 2
    finally:
        await producer.stop()


async def test_survives_a_broker_restart(fresh_broker: TansuBroker) -> None:
    settings = _settings(fresh_broker.bootstrap)
    specs = tp.group_topics(settings)
    async with tp.TopicManager(settings, timeout=10) as manager:
        assert len(await manager.ensure(specs)) == len(specs)
        fresh_broker.restart()  # in-memory storage: every topic is gone, the admin connection is dead
        recreated = await manager.ensure(specs)
        assert sorted(recreated) == sorted(s.name for s in specs)
        assert {s.name for s in specs} <= await manager.existing()


async def test_start_and_stop_are_idempotent(kafka_broker: TansuBroker) -> None:
    manager = tp.TopicManager(_settings(kafka_broker.bootstrap))
    await manager.start()
    await manager.start()
    assert manager.started
    await manager.stop()
    await manager.stop()
    assert not manager.started


async def test_unreachable_bootstrap_is_a_network_error() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    with pytest.raises(NetworkError) as caught:
        await tp.ensure_topics(_settings(bootstrap), [tp.TopicSpec("x", 1, 1000)])
    assert bootstrap in caught.value.message


# -- error paths with a fake admin client ------------------------------------------------------------------


@dataclass
class _Response:
    topic_errors: list[tuple[str, int, str | None]]


@dataclass
class FakeAdmin:
    """Answers CreateTopics from a script: topic -> error codes for successive attempts (0 = created)."""

    script: dict[str, list[int]]
    topics: set[str] = field(default_factory=set)
    requests: list[list[tuple[str, dict[str, str]]]] = field(default_factory=list)
    closed: bool = False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    async def list_topics(self) -> list[str]:
        return sorted(self.topics)

    async def create_topics(self, new_topics: list[Any]) -> _Response:
        self.requests.append([(t.name, dict(t.topic_configs)) for t in new_topics])
        errors = []
        for new in new_topics:
            codes = self.script.get(new.name, [0])
            code = codes.pop(0) if len(codes) > 1 else codes[0]
            if code == 0:
                self.topics.add(new.name)
            errors.append((new.name, code, "refused by test" if code else None))
        return _Response(errors)


def _fake_manager(admin: FakeAdmin, **values: Any) -> tp.TopicManager:
    return tp.TopicManager(_settings("k1:9092", **values), timeout=2, admin_factory=lambda _s: admin)


INVALID_CONFIG, POLICY_VIOLATION, TOPIC_AUTH, CLUSTER_AUTH, EXISTS, BAD_RF = 40, 44, 29, 31, 36, 38


@pytest.mark.parametrize("code", [INVALID_CONFIG, POLICY_VIOLATION])
async def test_compaction_refused_falls_back_to_time_retention(code: int, caplog: pytest.LogCaptureFixture) -> None:
    spec = tp.TopicSpec("group.g.announce", 1, 5000, compact=True)
    admin = FakeAdmin({spec.name: [code, 0]})
    with caplog.at_level(logging.WARNING, logger="core.group.topics"):
        assert await _fake_manager(admin).ensure([spec, tp.TopicSpec("group.g.control", 1, 5000)]) == [
            "group.g.control",
            "group.g.announce",
        ]
    assert admin.requests[1] == [("group.g.announce", {"retention.ms": "5000"})]
    assert "compaction unavailable" in caplog.text


async def test_all_configs_refused_uses_broker_defaults(caplog: pytest.LogCaptureFixture) -> None:
    spec = tp.TopicSpec("group.g.announce", 1, 5000, compact=True)
    admin = FakeAdmin({spec.name: [INVALID_CONFIG, INVALID_CONFIG, 0]})
    with caplog.at_level(logging.WARNING, logger="core.group.topics"):
        assert await _fake_manager(admin).ensure([spec]) == [spec.name]
    assert [r[0][1] for r in admin.requests] == [spec.configs(), {"retention.ms": "5000"}, {}]
    assert "broker's defaults" in caplog.text


async def test_already_exists_is_a_race_not_an_error() -> None:
    admin = FakeAdmin({"group.g.requests": [EXISTS]})
    assert await _fake_manager(admin).ensure([tp.TopicSpec("group.g.requests", 6, 1000)]) == []


@pytest.mark.parametrize("code", [TOPIC_AUTH, CLUSTER_AUTH])
async def test_authorization_failure_says_what_to_grant(code: int) -> None:
    admin = FakeAdmin({"group.g.requests": [code]})
    manager = _fake_manager(admin, name="g", security_protocol="SASL_PLAINTEXT", sasl_username="ada")
    with pytest.raises(ConfigError) as caught:
        await manager.ensure([tp.TopicSpec("group.g.requests", 6, 1000)])
    error = caught.value
    assert "User:ada" in error.message and "group.g.requests" in error.message
    assert "--operation Create" in error.fix and "'group.g.'" in error.fix and "prefixed" in error.fix
    assert "pre-create" in error.fix and "partitions=6" in error.fix


async def test_authorization_failure_on_listing() -> None:
    from aiokafka.errors import ClusterAuthorizationFailedError

    class Denied(FakeAdmin):
        async def list_topics(self) -> list[str]:
            raise ClusterAuthorizationFailedError()

    manager = _fake_manager(Denied({}), name="g")
    with pytest.raises(ConfigError) as caught:
        await manager.ensure([tp.TopicSpec("group.g.requests", 6, 1000)])
    assert "lacks permission" in caught.value.message and "group.g.announce" in caught.value.fix


async def test_replication_factor_too_high() -> None:
    admin = FakeAdmin({"group.g.requests": [BAD_RF]})
    with pytest.raises(ConfigError, match="replicas") as caught:
        await _fake_manager(admin, replication_factor=3).ensure([tp.TopicSpec("group.g.requests", 6, 1000)])
    assert "group.replication_factor" in caught.value.fix


async def test_a_hanging_broker_is_time_bounded() -> None:
    import asyncio

    class Hanging(FakeAdmin):
        async def list_topics(self) -> list[str]:
            await asyncio.sleep(60)
            return []

    manager = tp.TopicManager(_settings("k1:9092"), timeout=0.2, admin_factory=lambda _s: Hanging({}))
    with pytest.raises(NetworkError, match="timed out"):
        await asyncio.wait_for(manager.ensure([tp.TopicSpec("x", 1, 1)]), 5)
