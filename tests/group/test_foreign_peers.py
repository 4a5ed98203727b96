"""The foreign peers in docs/examples/ (written from docs/protocol.md alone, no Shoal code) against a real broker.

Each peer runs as a subprocess; docs/examples/dispatch_request.py is the foreign requester. The test reads the
group's topics itself to check what the protocol promises: correlation, causation, trace, addressing, audit and
the leave on exit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker

# kafka-python 3 loads its protocol schemas with the deprecated importlib.resources.read_text (the foreign
# scripts are kafka-python programs; the suite turns warnings into errors).
KAFKA_PYTHON_WARNING = "ignore:(read|open)_text is deprecated:DeprecationWarning"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
pytestmark = pytest.mark.filterwarnings(KAFKA_PYTHON_WARNING)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
PEERS = [("kafka_python_peer.py", "upper", str.upper), ("confluent_peer.py", "reverse", lambda s: s[::-1])]
ENV = {**os.environ, **{f"SHOAL_{k.upper()}": str(v) for k, v in TEST_CLIENT_SETTINGS.items()}}
CLIENT = {"request_timeout_ms": TEST_CLIENT_SETTINGS["request_timeout_ms"], "fetch_max_wait_ms": 10}


def _load_dispatch() -> Any:
    """The foreign requester's helpers (a standalone script, not Shoal code), loaded from its file."""
    spec = importlib.util.spec_from_file_location("dispatch_request", EXAMPLES / "dispatch_request.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dispatch = _load_dispatch()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def peer(kafka_broker: TansuBroker, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable]:
    """Start a peer script as a subprocess; every one started is killed at teardown if still running."""
    started: list[subprocess.Popen[bytes]] = []

    def start(script: str, group: str, skill: str, *extra: str) -> subprocess.Popen[bytes]:
        args = ["--bootstrap", kafka_broker.bootstrap, "--group", group, "--skill", skill, *extra]
        log = (tmp_path / f"{script}.log").open("wb")
        process = subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], env=ENV, stdout=log, stderr=log)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def read_topic(bootstrap: str, topic: str, done: Callable[[list[dict]], bool], timeout: float = 20) -> list[dict]:
    """Every envelope on `topic` from the beginning, read until done(envelopes) or the timeout."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **CLIENT)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        envelopes: list[dict] = []
        deadline = time.monotonic() + timeout
        while not done(envelopes) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                envelopes.extend(json.loads(r.value) for r in records)
        return envelopes
    finally:
        consumer.close()


def run_dispatch(bootstrap: str, group: str, skill: str, text: str) -> subprocess.CompletedProcess[str]:
    args = ["--bootstrap", bootstrap, "--group", group, "--skill", skill, "--input", text, "--timeout", "20"]
    script = str(EXAMPLES / "dispatch_request.py")
    return subprocess.run([sys.executable, script, *args], env=ENV, capture_output=True, text=True, timeout=40)


def trace_id(envelope: dict) -> str:
    return envelope["traceparent"].split("-")[1]


def has_leave(agentid: str) -> Callable[[list[dict]], bool]:
    return lambda envs: any(e["type"] == "shoal.roster.leave" and e["agentid"] == agentid for e in envs)


@pytest.mark.parametrize(("script", "skill", "expected"), PEERS, ids=["kafka-python", "confluent"])
def test_peer_answers_a_foreign_request(
    kafka_broker: TansuBroker, peer: Callable, script: str, skill: str, expected: Callable[[str], str]
) -> None:
    group, text = unique("foreign"), "Tides fold, unfold: ébène 潮"
    process = peer(script, group, skill, "--once")

    done = run_dispatch(kafka_broker.bootstrap, group, skill, text)

    assert done.returncode == 0, done.stderr
    assert process.wait(15) == 0  # --once: it exits after answering, leaving cleanly
    result = json.loads(done.stdout)
    bootstrap, topics = kafka_broker.bootstrap, dispatch.topic_names(group, skill)
    (request,) = read_topic(bootstrap, topics["queue"], lambda envs: len(envs) >= 1)
    taker = result["agentid"]
    announces = read_topic(bootstrap, topics["announce"], has_leave(taker))
    card = next(e for e in announces if e["type"] == "shoal.roster.announce" and e["agentid"] == taker)
    assert dispatch.agent_id_of(card["data"]["publickey"]) == taker
    assert dispatch.verify(result, card["data"]["publickey"])

    taskid = request["data"]["taskid"]
    assert result["type"] == "shoal.task.result"
    assert result["data"] == {**result["data"], "taskid": taskid, "status": "ok", "output": expected(text)}
    assert result["correlationid"] == request["correlationid"] == taskid
    assert result["causationid"] == request["id"]
    assert result["recipient"] == request["agentid"] == request["data"]["requester"]["agentid"]
    assert trace_id(result) == trace_id(request) and result["traceparent"] != request["traceparent"]

    (accepted,) = read_topic(bootstrap, f"group.{group}.progress", lambda envs: len(envs) >= 1)
    assert accepted["data"]["state"] == "accepted" and accepted["data"]["taskid"] == taskid
    assert (accepted["correlationid"], accepted["recipient"], accepted["agentid"]) == (
        taskid,
        request["agentid"],
        taker,
    )
    assert dispatch.verify(accepted, card["data"]["publickey"])

    leave = next(e for e in announces if e["type"] == "shoal.roster.leave" and e["agentid"] == taker)
    assert leave["data"] == {"agentid": taker, "reason": "quit"} and dispatch.verify(leave, card["data"]["publickey"])

    audit = read_topic(bootstrap, f"group.{group}.audit", lambda envs: len(envs) >= 1)
    records = [r for e in audit if e["agentid"] == taker for r in e["data"]["records"]]
    assert {(r["action"], r["envelope"]["id"]) for r in records} >= {
        ("received", request["id"]),
        ("sent", accepted["id"]),
        ("sent", result["id"]),
    }


@pytest.mark.parametrize(("script", "skill", "expected"), PEERS, ids=["kafka-python", "confluent"])
def test_peer_ignores_a_tampered_request_and_leaves_on_sigterm(
    kafka_broker: TansuBroker, peer: Callable, script: str, skill: str, expected: Callable[[str], str]
) -> None:
    group, bootstrap = unique("tamper"), kafka_broker.bootstrap
    topics = dispatch.topic_names(group, skill)
    dispatch.ensure_topics({"bootstrap_servers": bootstrap, "request_timeout_ms": CLIENT["request_timeout_ms"]}, topics)
    process = peer(script, group, skill)
    me = dispatch.Identity(group, "tamperer")
    tampered = me.request(skill, "pay alice 10", timeout_s=3)
    tampered["data"]["input"] = "pay mallory 1000"  # changed after signing: the signature no longer matches
    honest = me.request(skill, "after the forgery", timeout_s=20)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    try:
        dispatch.send(producer, topics["announce"], me.agentid, me.announce())  # a known sender: not unknown-sender
        for request in (tampered, honest):  # one partition: the peer handles them in this order
            dispatch.send(producer, topics["queue"], request["data"]["taskid"], request)
        producer.flush()
    finally:
        producer.close()

    def answered(envs: list[dict]) -> bool:
        return any(e["data"]["taskid"] == honest["data"]["taskid"] for e in envs)

    results = read_topic(bootstrap, topics["responses"], answered)
    assert [e["data"]["output"] for e in results] == [expected("after the forgery")]  # nothing for the forgery
    assert [e["causationid"] for e in results] == [honest["id"]]
    audit = read_topic(bootstrap, f"group.{group}.audit", lambda envs: len(envs) >= 2)
    drops = [r for e in audit for r in e["data"]["records"] if r["action"] == "dropped"]
    assert [(r["reason"], r["envelope"]["id"]) for r in drops] == [("bad-signature", tampered["id"])]

    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    taker = results[0]["agentid"]
    assert has_leave(taker)(read_topic(bootstrap, topics["announce"], has_leave(taker)))
