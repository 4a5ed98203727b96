"""The limits a task runs within, against the real broker: payloads over the inline limit travel by reference
(S3 or a shared folder), and deadlines and the delegation depth limit are enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.group import dispatch as dispatch_module
from core.group.envelope import TASK_REQUEST, TASK_RESULT
from core.group.topics import topic
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.echo_skill import ECHO, counting_worker, responses_until
from tests.group.helpers import RawPeer, db_rows, eventually, group_overrides, read_all, unique_group

# --- 7. large payloads by reference ------------------------------------------------------------------------


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
        )
        client.create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["s3", "folder"])
async def test_large_payload_travels_by_reference(kafka_broker: TansuBroker, tmp_path: Path, kind: str) -> None:
    import keyring

    group, bucket = unique_group(), "shoal-group-test"
    with contextlib.ExitStack() as stack:
        if kind == "s3":
            url = stack.enter_context(moto_s3(bucket))
            keyring.set_password("shoal", "s3:s3", "testing:testing")
            artifacts = {"kind": "s3", "s3_bucket": bucket, "s3_endpoint_url": url, "s3_region": "us-east-1"}
        else:
            (tmp_path / "shared").mkdir()
            artifacts = {"kind": "folder", "folder": str(tmp_path / "shared")}
        extra: dict[str, Any] = {"artifacts": artifacts, "max_inline_bytes": 1024}
        w_over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO, **extra)
        d_over = group_overrides(kafka_broker, group, "boss", tmp_path / "d", **extra)
        async with scripted_core([], overrides=w_over) as (worker, _), scripted_core([], overrides=d_over) as (boss, _):
            await boss.group.node.wait_online(15)
            await worker.group.node.wait_online(15)
            text = "".join(f"line {n:06d}: the tide comes in, the tide goes out\n" for n in range(6200))
            assert len(text.encode()) > 300_000
            handle = await boss.group.dispatch(text, skill="echo", deadline=60)
            result = await asyncio.wait_for(handle.result(), 60)
            assert result.status == "ok", result.error
            assert result.output == text

        scheme = "s3://" if kind == "s3" else "file://"
        for suffix, event_type in (("skill.echo.requests", TASK_REQUEST), ("responses", TASK_RESULT)):
            records = await read_all(kafka_broker.bootstrap, topic(group, suffix))
            (wire,) = [e for e in map(lambda r: json.loads(r.value), records) if e["type"] == event_type]
            assert "data" not in wire and wire["dataref"].startswith(scheme), wire
            assert wire["datadigest"].startswith("sha256:") and wire["datasize"] > 300_000
            assert max(len(r.value) for r in records) < 4096  # the broker never carried the payload


# --- 9. deadlines and the depth limit -----------------------------------------------------------------------


async def test_deadlines_and_depth_limit(
    kafka_broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch_module, "RESULT_GRACE", 0.3)
    group = unique_group()
    w_over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO, max_delegation_depth=2)
    d_over = group_overrides(kafka_broker, group, "boss", tmp_path / "d", max_delegation_depth=5)
    async with scripted_core([], overrides=w_over) as (worker, _), scripted_core([], overrides=d_over) as (boss, _):
        runner = counting_worker(worker)
        await boss.group.node.wait_online(15)
        await worker.group.node.wait_online(15)
        await eventually(lambda: {"worker", "boss"} <= {m.name for m in boss.group.members()})

        # nobody serves the skill: the dispatcher gives up after the deadline, saying why
        started = time.monotonic()
        nobody = await boss.group.dispatch("anyone?", skill="translate", deadline=1.0)
        result = await asyncio.wait_for(nobody.result(), 10)
        assert result.status == "unanswered"
        assert "No live member offers the skill 'translate'" in result.error["message"]
        assert 1.0 <= time.monotonic() - started < 5

        # the deadline has passed when the worker reads the request: expired, not run
        late = await boss.group.dispatch("too late", skill="echo", deadline=0.001)
        result = await asyncio.wait_for(late.result(), 10)
        assert result.status == "expired", result
        assert "had passed" in result.error["message"]
        assert result.agent["agentid"] == worker.group.node.agent_id

        # depth over the worker's own limit (2), though within the requester's (5): refused
        deep = await boss.group.dispatch("delegated again", skill="echo", deadline=10, depth=3)
        result = await asyncio.wait_for(deep.result(), 15)
        assert result.status == "refused" and "depth 3 exceeds the limit 2" in result.error["message"]

        # within both limits: runs
        fine = await boss.group.dispatch("delegated once", skill="echo", deadline=10, depth=2)
        result = await asyncio.wait_for(fine.result(), 15)
        assert result.ok and result.output == "delegated once"
        assert runner.calls == [fine.taskid]
        rows = db_rows(tmp_path / "w", "SELECT task_id, status FROM group_tasks WHERE direction = 'in'")
        assert dict(rows) == {late.taskid: "expired", deep.taskid: "refused", fine.taskid: "ok"}
        rows = db_rows(tmp_path / "d", "SELECT task_id, status FROM group_tasks WHERE direction = 'out'")
        assert dict(rows)[nobody.taskid] == "unanswered"


async def test_request_over_its_own_maxdepth_is_refused(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    """The request's `maxdepth` binds the taker too (here lower than the taker's own setting)."""
    group = unique_group()
    over = group_overrides(kafka_broker, group, "worker", tmp_path / "w", skills=ECHO)
    async with scripted_core([], overrides=over) as (core, _), RawPeer(kafka_broker, group, "asker") as peer:
        runner = counting_worker(core)
        await core.group.node.wait_online(15)
        await peer.announce()
        await eventually(lambda: core.group.node.roster.key_for(peer.agent_id) is not None)
        request = peer.request("echo", "deep", depth=2, maxdepth=1)
        taskid = request["data"]["taskid"]
        await peer.send("skill.echo.requests", request, key=taskid)
        (result,) = await responses_until(kafka_broker, group, taskid, 1)
        assert result["data"]["status"] == "refused"
        assert result["data"]["error"]["code"] == "refused"
        assert runner.calls == []
