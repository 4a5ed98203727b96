"""Two in-process agents on the real broker: roster, an echo task, an agent task through the scripted model."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.group import dispatch
from tests.fixtures.cores import scripted_core
from tests.fixtures.kafka_broker import TansuBroker
from tests.group.helpers import eventually, group_overrides


async def test_two_agents_roster_and_echo_task(
    kafka_broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "FORGET_AFTER", 1.0)
    group = f"g{uuid.uuid4().hex[:8]}"
    a_over = group_overrides(kafka_broker, group, "alice", tmp_path / "a", skills=[{"name": "echo", "handler": "echo"}])
    b_over = group_overrides(kafka_broker, group, "bob", tmp_path / "b")
    async with scripted_core(["hi"], overrides=a_over) as (a, _), scripted_core(["hi"], overrides=b_over) as (b, _):
        await a.group.node.wait_online(15)
        await b.group.node.wait_online(15)
        await eventually(lambda: len(b.group.members()) == 2 and len(a.group.members()) == 2)
        handle = await b.group.dispatch("ping 1", skill="echo", deadline=20)
        updates = [u async for u in handle]
        result = updates[-1]
        assert result.status == "ok" and result.output == "ping 1"
        assert result.agent["agentid"] == a.group.node.agent_id
        # the accepted notice travels on the progress topic: it may be read just after the result
        await eventually(lambda: handle.accepted_by is not None, timeout=5)
        assert handle.accepted_by and handle.accepted_by["agentid"] == a.group.node.agent_id
        await eventually(lambda: handle.taskid not in b.group.dispatcher.handles, timeout=10)  # then let go
