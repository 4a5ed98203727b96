"""Builders for group tests: settings for a member of a test group on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker


def group_overrides(
    broker: TansuBroker,
    group: str,
    name: str,
    data_dir: Path,
    *,
    skills: list[dict[str, str]] | None = None,
    heartbeat: float = 0.5,
    **extra: Any,
) -> dict[str, Any]:
    """CLI-layer settings for one member: its own data folder, test client timings, short heartbeats."""
    return {
        "paths": {"data_dir": str(data_dir)},
        "group": {
            "enabled": True,
            "name": group,
            "bootstrap_servers": [broker.bootstrap],
            "agent_name": name,
            "skills": skills or [],
            "heartbeat_interval": heartbeat,
            "partitions": 2,
            "client": dict(TEST_CLIENT_SETTINGS),
            **extra,
        },
    }


def group_env(broker: TansuBroker, group: str, name: str, data_dir: Path, **kwargs: Any) -> dict[str, str]:
    """The same as environment variables, for member processes (`SHOAL_GROUP__*`)."""
    import json

    env = dict(os.environ)
    for section, values in group_overrides(broker, group, name, data_dir, **kwargs).items():
        for key, value in values.items():
            name_ = f"SHOAL_{section.upper()}__{key.upper()}"
            env[name_] = json.dumps(value) if not isinstance(value, str) else value
    return env


async def eventually(check: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05) -> None:
    """Wait for `check()` to hold; fail with the condition's source line otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


# --- member processes ----------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
KEYRING_BACKEND = "tests.fixtures.memory_keyring.MemoryKeyring"


def unique_group(prefix: str = "g") -> str:
    import uuid

    return f"{prefix}{uuid.uuid4().hex[:10]}"


def member_env(broker: TansuBroker, group: str, name: str, data_dir: Path, **kwargs: Any) -> dict[str, str]:
    """`group_env` plus what a member process needs here: the repository on the path and the in-memory
    keyring (each process gets a fresh identity)."""
    env = group_env(broker, group, name, data_dir, **kwargs)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHON_KEYRING_BACKEND"] = KEYRING_BACKEND
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def shoal_command(*args: str) -> list[str]:
    # Not `-m app.cli`: run as __main__, the module would be a second copy that the command modules don't extend.
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


class Processes:
    """Member processes of one test: each logs to a file; `close()` kills whatever is still running."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, env: dict[str, str], *args: str, name: str = "member") -> subprocess.Popen[bytes]:
        from tests.fixtures.kafka_broker import _death_signal_hook

        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                shoal_command(*args),
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_death_signal_hook(),  # never outlive a killed test run
            )
        self.started.append(process)
        self.logs[process.pid] = log_path
        return process

    def member(self, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        """`shoal group run`: a headless member serving its skills until SIGTERM."""
        return self.start(env, "group", "run", name=name)

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return self.logs[process.pid].read_text(errors="replace")

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    """The exit code of a process, waited for without blocking the event loop."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (code := process.poll()) is None:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"process {process.args!r} still running after {timeout} s")
        await asyncio.sleep(0.05)
    return code


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


async def run_cli(env: dict[str, str], *args: str, timeout: float = 60.0) -> CliResult:
    """A short-lived `shoal …` command, run without blocking the loop (in-process members keep working)."""
    process = await asyncio.create_subprocess_exec(
        *shoal_command(*args),
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"`shoal {' '.join(args)}` did not finish within {timeout} s") from None
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


# --- looking inside a member ----------------------------------------------------------------------------


def db_rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from a member's database (read-only; works while the member runs: WAL mode)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{data_dir / 'shoal.db'}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


# --- the raw wire ---------------------------------------------------------------------------------------


async def read_topic(
    bootstrap: str,
    topic_name: str,
    until: Callable[[list[Any]], bool] | None = None,
    timeout: float = 10.0,
) -> list[Any]:
    """Every record of a topic from the beginning (aiokafka ConsumerRecords), read until `until(records)`
    holds (or the timeout), or without `until` until the topic is drained (highwater reached, twice)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=TEST_CLIENT_SETTINGS["request_timeout_ms"],
        fetch_max_wait_ms=TEST_CLIENT_SETTINGS["fetch_max_wait_ms"],
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:  # with `until`, wait for the topic to exist (after a broker restart it may not yet)
            cluster = await consumer._client.fetch_all_metadata()  # fresh: the consumer's own copy may be stale
            numbers = sorted(cluster.partitions_for_topic(topic_name) or ())
            if numbers or until is None or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        partitions = [TopicPartition(topic_name, p) for p in numbers]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        idle = 0
        while not (until is not None and until(records)) and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            positions = [await consumer.position(tp) for tp in partitions]
            drained = all(
                consumer.highwater(tp) is not None and pos >= (consumer.highwater(tp) or 0)
                for tp, pos in zip(partitions, positions, strict=True)
            )
            idle = idle + 1 if drained and not batch else 0
            if idle >= 2 and until is None:
                break
        return records
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic_name: str, timeout: float = 10.0) -> list[Any]:
    """Everything on a topic now (stops once the topic is drained)."""
    return await read_topic(bootstrap, topic_name, None, timeout)


class RawPeer:
    """A hand-made member (no Shoal node): its own key, signed envelopes, sent with a raw aiokafka producer.
    Used to put exactly chosen bytes on the wire (duplicates, forgeries, tampering)."""

    def __init__(self, broker: TansuBroker, group: str, name: str = "raw") -> None:
        from core.group.identity import Identity

        self.broker = broker
        self.group = group
        self.name = name
        self.identity = Identity.generate()
        self.producer: Any = None

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    async def __aenter__(self) -> RawPeer:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap,
            request_timeout_ms=TEST_CLIENT_SETTINGS["request_timeout_ms"],
            linger_ms=0,
            max_request_size=4 * 1024 * 1024,
        )
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    def topic(self, suffix: str) -> str:
        from core.group.topics import topic

        return topic(self.group, suffix)

    def card(self, **changes: Any) -> dict[str, Any]:
        card: dict[str, Any] = {
            "agentid": self.agent_id,
            "name": self.name,
            "description": "a hand-made test peer",
            "skills": [],
            "model": "",
            "zone": "public",
            "publickey": self.identity.public_b64,
            "capabilities": ["task"],
            "version": "test",
            "heartbeatms": 60_000,
            "startedat": "2026-01-01T00:00:00Z",
            "status": "idle",
            "activetasks": 0,
        }
        return {**card, **changes}

    def envelope(self, event_type: str, data: dict[str, Any], **attrs: Any) -> dict[str, Any]:
        """A signed envelope (as a dict) from this peer; `attrs` are passed on to `envelope.make`."""
        from core.group.envelope import make
        from core.timeline.ids import TraceContext

        attrs.setdefault("correlationid", str(data.get("taskid") or self.agent_id))
        env = make(self.identity, self.group, event_type, data, trace=TraceContext.new_root(), **attrs)
        return dict(env.attrs)

    def request(self, skill: str, text: str, *, deadline_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """A signed `shoal.task.request` for a skill queue."""
        from datetime import UTC, datetime, timedelta

        from core.group.envelope import TASK_REQUEST
        from core.timeline.ids import new_id

        due = datetime.now(UTC) + timedelta(seconds=deadline_s)
        data = {
            "taskid": new_id(),
            "skill": skill,
            "input": text,
            "deadline": due.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "depth": 0,
            "maxdepth": 3,
            "requester": {"agentid": self.agent_id, "name": self.name},
            **fields,
        }
        return self.envelope(TASK_REQUEST, data)

    async def announce(self, **changes: Any) -> dict[str, Any]:
        from core.group.envelope import ROSTER_ANNOUNCE

        envelope = self.envelope(ROSTER_ANNOUNCE, self.card(**changes), correlationid=self.agent_id)
        await self.send("announce", envelope, key=self.agent_id)
        return envelope

    async def send(
        self, suffix: str, value: dict[str, Any] | bytes | None, *, key: str | None = None, partition: int | None = None
    ) -> Any:
        """Produce to `group.<group>.<suffix>`: a dict as its canonical JSON, bytes as they are. Returns the
        record's metadata (topic, partition, offset)."""
        from core.group.envelope import canonical

        raw = canonical(value) if isinstance(value, dict) else value
        return await self.producer.send_and_wait(
            self.topic(suffix), raw, key=key.encode() if key else None, partition=partition
        )
