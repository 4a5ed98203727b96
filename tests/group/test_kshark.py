"""`shoal kshark` against the real broker, dead ports, bad names, protocol mix-ups and local TLS servers.

Tansu speaks neither TLS nor SASL, so certificate names and expiry are checked against a loopback TLS server
with throwaway certificates made here by `cryptography`, and the SASL path against Tansu's refusal of the SASL
handshake (docs/kshark.md: what the test broker cannot show).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.group import kafka_config as kc
from core.group import kshark as ks
from core.group import topics as tp
from core.group.kshark import network
from core.settings import GroupSettings
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker
from tests.group.helpers import group_overrides, member_env, run_cli

TIMEOUT = 1.0
SLACK_MS = 400  # scheduling noise on a shared 2-core machine
SCHEMA = json.loads((Path(__file__).parents[2] / "resources/schemas/kshark.schema.json").read_text())
LATER = ("Kafka metadata", "Group topics", "Produce/consume probe", "Consumer groups")


def _settings(*servers: str, **values: Any) -> GroupSettings:
    name = values.pop("name", f"k{uuid.uuid4().hex[:10]}")
    return GroupSettings(name=name, bootstrap_servers=list(servers), client=dict(TEST_CLIENT_SETTINGS), **values)


async def _run(settings: GroupSettings, **kwargs: Any) -> dict[str, ks.Check]:
    checks = [check async for check in ks.run_checks(settings, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)]
    assert len({c.name for c in checks}) == len(checks), "check names are unique"
    return {c.name: c for c in checks}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_bounded(checks: dict[str, ks.Check], timeout: float = TIMEOUT) -> None:
    for check in checks.values():
        assert check.duration_ms <= timeout * 1000 + SLACK_MS, check


def _assert_rest_skipped(checks: dict[str, ks.Check], reason: str) -> None:
    for name in LATER:
        assert checks[name].status == "skip" and reason in checks[name].detail, checks[name]


# -- against the real broker -------------------------------------------------------------------------------


async def _backlog(broker: TansuBroker, settings: GroupSettings, read: int) -> AsyncIterator[Any]:
    """A member of the skill queue `backlog` (subscribed, so the broker lists it) that read `read` of the 5
    tasks waiting there and committed them; it stays in the group until the generator is closed."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    queue = tp.skill_topic(settings.name, "backlog")
    await tp.ensure_topics(settings, [tp.skill_spec(settings, "backlog")])
    producer = AIOKafkaProducer(**kc.producer_kwargs(settings))
    await producer.start()
    try:
        for i in range(5):
            await producer.send(queue, f"task {i}".encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    group_id = f"shoal.{settings.name}.skill.backlog"
    consumer = AIOKafkaConsumer(queue, **kc.consumer_kwargs(settings, group_id, earliest=True))
    await consumer.start()
    try:
        records: list[Any] = []
        while len(records) < read:
            batch = await consumer.getmany(timeout_ms=500, max_records=read - len(records))
            records += [r for rs in batch.values() for r in rs]
        await consumer.commit({TopicPartition(queue, 0): records[-1].offset + 1})
        yield consumer
    finally:
        await consumer.stop()


async def test_all_ok_with_members_topics_and_lag(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"k{uuid.uuid4().hex[:8]}"
    echo = [{"name": "echo", "handler": "echo"}]
    a_over = group_overrides(kafka_broker, group, "alice", tmp_path / "a", skills=echo)
    b_over = group_overrides(kafka_broker, group, "bob", tmp_path / "b")
    settings = _settings(kafka_broker.bootstrap, name=group, partitions=2, skills=echo)
    async with scripted_core(["hi"], overrides=a_over) as (a, _), scripted_core(["hi"], overrides=b_over) as (b, _):
        await a.group.node.wait_online(15)
        await b.group.node.wait_online(15)
        handle = await b.group.dispatch("ping", skill="echo", deadline=20)
        assert [u async for u in handle][-1].status == "ok"  # alice's skill queue read and committed the task
        bob_inbox = f"shoal.{group}.agent.{b.group.node.agent_id}"  # read alice's answer and committed it
        async with contextlib.aclosing(_backlog(kafka_broker, settings, read=2)) as backlog:
            await anext(backlog)
            checks = await _run(settings, timeout=5.0)
    host, port = kc.split_server(kafka_broker.bootstrap)
    names = list(checks)
    assert names[:7] == [
        "Settings",
        f"DNS {host}",
        f"TCP {host}:{port}",
        f"Kafka {host}:{port}",
        "Kafka metadata",
        "Group topics",
        "Produce/consume probe",
    ]
    assert {c.status for c in checks.values()} == {"ok"}, ks.summarize(checks.values())
    assert "ApiVersions" in checks[f"Kafka {host}:{port}"].detail
    assert "1 broker(s)" in checks["Kafka metadata"].detail and "controller" in checks["Kafka metadata"].detail
    topics = checks["Group topics"]
    assert "partitions as §5 asks" in topics.detail and "skill.backlog.requests (2)" in topics.detail
    rows = {r["name"]: r for r in topics.data["topics"]}
    assert rows[tp.topic(group, "announce")] == {
        "name": tp.topic(group, "announce"),
        "partitions": 1,
        "expected": 1,
        "status": "ok",
    }
    assert rows[tp.skill_topic(group, "echo")]["partitions"] == 2
    lines = {c.data["group"]: c for c in checks.values() if c.kind == "consumer_group"}
    assert {f"shoal.{group}.skill.echo", f"shoal.{group}.skill.backlog", bob_inbox} <= set(lines)
    assert all(name.startswith(f"shoal.{group}.") for name in lines)
    inbox = lines[bob_inbox]
    assert "reads by assignment" in inbox.detail
    assert {p["topic"] for p in inbox.data["partitions"]} >= {tp.topic(group, "responses")}
    backlog = lines[f"shoal.{group}.skill.backlog"]
    assert backlog.data["partitions"] == [
        {"topic": tp.skill_topic(group, "backlog"), "partition": 0, "committed": 2, "highwater": 5, "lag": 3}
    ]
    assert "lag 3" in backlog.detail and "skill.backlog.requests[0]=3" in backlog.detail
    assert len(backlog.data["members"]) >= 1
    taken = lines[f"shoal.{group}.skill.echo"]
    assert taken.data["lag"] == 0 and taken.data["members"] and taken.data["partitions"], taken
    assert all(p["committed"] >= 1 for p in taken.data["partitions"])
    async with tp.TopicManager(settings) as manager:
        remaining = await manager.existing()
    assert not [t for t in remaining if t.startswith(f"group.{group}.probe.")], "scratch topic deleted"
    assert checks["Produce/consume probe"].data["deleted"] is True


async def test_a_new_group_warns_about_topics_and_members(kafka_broker: TansuBroker) -> None:
    checks = await _run(_settings(kafka_broker.bootstrap), probe=False)
    topics = checks["Group topics"]
    assert topics.status == "warn" and "none of the" in topics.detail and "announce" in topics.detail
    assert "created on join" in topics.hint
    assert (
        checks["Produce/consume probe"].status == "skip" and "not requested" in checks["Produce/consume probe"].detail
    )
    assert checks["Consumer groups"].status == "warn" and "no member" in checks["Consumer groups"].detail
    assert ks.overall(checks.values()) == "warn"
    _assert_bounded(checks)


async def test_auto_created_single_partition_topic_warns(kafka_broker: TansuBroker) -> None:
    settings = _settings(kafka_broker.bootstrap)
    announce = tp.topic(settings.name, "announce")
    others = [spec for spec in tp.group_topics(settings) if spec.name != announce]
    await tp.ensure_topics(settings, [*others, tp.TopicSpec(announce, 4, 60_000)])
    checks = await _run(settings, probe=False)
    assert checks["Group topics"].status == "warn"
    assert (
        f"{announce} has 4 partitions" in checks["Group topics"].detail
        and "auto-created" in checks["Group topics"].detail
    )


async def test_sasl_against_a_listener_without_sasl(kafka_broker: TansuBroker) -> None:
    kc.set_group_password("sasl-group", "pw")
    settings = _settings(kafka_broker.bootstrap, name="sasl-group", security_protocol="SASL_PLAINTEXT")
    settings.sasl_username = "ada"
    checks = await _run(settings)
    host, port = kc.split_server(kafka_broker.bootstrap)
    assert checks[f"Kafka {host}:{port}"].status == "ok", "ApiVersions comes before any login"
    sasl = checks["SASL authentication"]
    assert sasl.status == "fail" and "'ada'" in sasl.detail and "sasl_mechanism" in sasl.hint
    _assert_rest_skipped(checks, "SASL authentication failed")
    _assert_bounded(checks)


async def test_missing_sasl_credentials_fail_without_the_network() -> None:
    port = _closed_port()
    checks = await _run(_settings(f"127.0.0.1:{port}", security_protocol="SASL_SSL", sasl_username="ada"))
    assert checks["Settings"].status == "ok" and checks["Settings"].data["sasl_password"] == "missing"
    assert checks["SASL authentication"].status == "fail" and "set-password" in checks["SASL authentication"].hint
    assert checks[f"TCP 127.0.0.1:{port}"].status == "fail"
    assert checks[f"TLS 127.0.0.1:{port}"].status == "skip"
    _assert_rest_skipped(checks, "no bootstrap server answers")


async def test_closing_the_report_early_stops_the_admin_client(
    kafka_broker: TansuBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[tp.TopicManager] = []
    original = tp.TopicManager.stop

    async def recording_stop(self: tp.TopicManager) -> None:
        stopped.append(self)
        await original(self)

    monkeypatch.setattr(tp.TopicManager, "stop", recording_stop)
    report = ks.run_checks(_settings(kafka_broker.bootstrap), timeout=TIMEOUT)
    async for check in report:
        if check.name == "Group topics":
            break
    assert not stopped
    await report.aclose()  # what a dialog does when the user closes it mid-run
    assert stopped and not stopped[0].started


# -- unreachable servers -----------------------------------------------------------------------------------


async def test_closed_port_fails_tcp_and_skips_the_rest() -> None:
    port = _closed_port()
    checks = await _run(_settings(f"127.0.0.1:{port}"))
    tcp = checks[f"TCP 127.0.0.1:{port}"]
    assert tcp.status == "fail" and "connection refused" in tcp.detail and "Nothing listens" in tcp.hint
    assert (
        checks[f"Kafka 127.0.0.1:{port}"].status == "skip"
        and checks[f"Kafka 127.0.0.1:{port}"].detail == "no TCP connection"
    )
    _assert_rest_skipped(checks, "no bootstrap server answers Kafka requests")
    assert ks.overall(checks.values()) == "fail" and ks.exit_code(checks.values()) == 2
    _assert_bounded(checks)


async def test_wrong_host_fails_dns_while_another_server_answers(kafka_broker: TansuBroker) -> None:
    checks = await _run(_settings("no-such-host.invalid:9092", kafka_broker.bootstrap), probe=False)
    dns = checks["DNS no-such-host.invalid"]
    assert dns.status == "fail" and "does not resolve" in dns.detail and "bootstrap_servers" in dns.hint
    assert checks["TCP no-such-host.invalid:9092"].status == "skip"
    assert checks["Kafka no-such-host.invalid:9092"].detail == "DNS lookup failed"
    assert checks["Kafka metadata"].status == "ok"  # the second server still answers
    _assert_bounded(checks)


async def test_wrong_host_alone_skips_everything_after_dns() -> None:
    checks = await _run(_settings("no-such-host.invalid:9092"))
    assert checks["DNS no-such-host.invalid"].status == "fail"
    _assert_rest_skipped(checks, "no bootstrap server answers")


async def test_bad_address_and_invalid_tls_files() -> None:
    checks = await _run(_settings("host:notaport"))
    assert checks["Address host:notaport"].status == "fail" and checks["Address host:notaport"].kind == "address"
    port = _closed_port()
    broken = await _run(_settings(f"127.0.0.1:{port}", security_protocol="SSL", ssl_cafile="/nowhere/ca.pem"))
    assert broken["Settings"].status == "fail" and "group.ssl_cafile" in broken["Settings"].hint
    _assert_rest_skipped(broken, "the settings are incomplete")


@contextlib.contextmanager
def _black_hole() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, as a firewall that swallows packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()


async def test_a_black_hole_ends_within_the_budget() -> None:
    with _black_hole() as port:
        started = time.monotonic()
        checks = await _run(_settings(f"127.0.0.1:{port}"), timeout=1.0, budget=3.0)
        elapsed = time.monotonic() - started
    tcp = checks[f"TCP 127.0.0.1:{port}"]
    assert tcp.status == "fail" and "no answer within 1 s" in tcp.detail and "firewall" in tcp.hint
    _assert_rest_skipped(checks, "no bootstrap server answers")
    assert elapsed < 3.0, "within the run's budget"
    _assert_bounded(checks)


# -- protocol mix-ups and certificates ---------------------------------------------------------------------


async def test_tls_client_against_the_plaintext_broker(kafka_broker: TansuBroker) -> None:
    checks = await _run(_settings(kafka_broker.bootstrap, security_protocol="SSL"), timeout=5.0)
    host, port = kc.split_server(kafka_broker.bootstrap)
    tls = checks[f"TLS {host}:{port}"]
    assert tls.status == "fail" and "the server does not speak TLS" in tls.detail
    assert tls.hint.startswith("The server does not speak TLS") and "PLAINTEXT" in tls.hint
    assert tls.duration_ms < (network.SNIFF_AFTER + network.SNIFF_LIMIT) * 1000 + SLACK_MS, "not the full 5 s"
    assert checks[f"TCP {host}:{port}"].status == "ok" and checks[f"Kafka {host}:{port}"].detail == "no TLS session"
    _assert_rest_skipped(checks, "no bootstrap server answers")


def _env_without_broker(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with no broker of its own: the servers come from --bootstrap."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(Path(__file__).parents[2]),
        PYTHON_KEYRING_BACKEND="tests.fixtures.memory_keyring.MemoryKeyring",
        NO_COLOR="1",
        COLUMNS="220",
        SHOAL_GROUP__NAME=f"k{uuid.uuid4().hex[:8]}",
        SHOAL_PATHS__DATA_DIR=str(tmp_path / "data"),
    )
    return env


async def test_cli_json_validates_and_exit_codes(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"k{uuid.uuid4().hex[:8]}"
    env = member_env(kafka_broker, group, "cli", tmp_path / "cli")
    result = await run_cli(env, "kshark", "--json", "--no-probe")
    report = json.loads(result.stdout)
    Draft202012Validator(SCHEMA).validate(report)
    assert result.code == 0 and report["status"] == "warn" and report["exit_code"] == 0, result.stderr
    assert report["group"] == group and report["bootstrap_servers"] == [kafka_broker.bootstrap]
    kinds = [c["kind"] for c in report["checks"]]
    assert kinds == ["settings", "dns", "tcp", "kafka", "metadata", "topics", "probe", "consumer_group"]
    assert (await run_cli(env, "kshark", "--json", "--strict", "--no-probe")).code == 1

    port = _closed_port()
    alias = await run_cli(env, "group", "test", "--json", "--bootstrap", f"127.0.0.1:{port}")
    failed = json.loads(alias.stdout)
    Draft202012Validator(SCHEMA).validate(failed)
    assert alias.code == 2 and failed["status"] == "fail" and failed["bootstrap_servers"] == [f"127.0.0.1:{port}"]
    tcp = next(c for c in failed["checks"] if c["kind"] == "tcp")
    assert tcp["status"] == "fail" and tcp["server"] == f"127.0.0.1:{port}" and "Nothing listens" in tcp["hint"]


async def test_cli_table_and_the_default_budget_against_a_black_hole(tmp_path: Path) -> None:
    env = _env_without_broker(tmp_path)
    with _black_hole() as port:
        started = time.monotonic()
        result = await run_cli(env, "kshark", "--bootstrap", f"127.0.0.1:{port}", "--bootstrap", "nohost.invalid:1")
        elapsed = time.monotonic() - started
    assert result.code == 2, result.stderr
    assert elapsed < 15, "the default run is bounded by 15 s"
    lines = result.stdout.splitlines()
    row = next(line for line in lines if f"TCP 127.0.0.1:{port}" in line)
    assert "FAIL" in row and "no answer within 5 s" in row
    assert any("→ A firewall or VPN may be dropping the packets" in line for line in lines)
    assert any("FAIL" in line and "DNS nohost.invalid" in line for line in lines)
    assert any("SKIP" in line and "Kafka metadata" in line for line in lines)
    assert lines[-1].startswith("FAIL (") and "skip)" in lines[-1]
