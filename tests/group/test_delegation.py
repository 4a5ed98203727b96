"""The agent's own peer tools and the `agent` skill handler, through real cores on the real broker.

Alice's scripted model calls `delegate`; Bob takes the task with a turn of his own (scripted model), inside
Alice's trace. Then a plain kafka-python peer from docs/examples answers a task Shoal dispatches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from core import events as ev
from core.providers.scripted import tool_call
from tests.fixtures.cores import run_turn, scripted_core
from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker
from tests.group.helpers import eventually, group_overrides

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


async def test_delegate_tool_runs_a_peer_turn_inside_the_same_trace(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"d{uuid.uuid4().hex[:8]}"
    coder = [{"name": "coder", "description": "writes code", "handler": "agent"}]
    alice_steps = [[tool_call("delegate", {"skill": "coder", "task": "write hello in python"})], "Bob says: done"]
    bob_steps = ["print('hello')"]
    a_over = group_overrides(kafka_broker, group, "alice", tmp_path / "a")
    b_over = group_overrides(kafka_broker, group, "bob", tmp_path / "b", skills=coder)
    async with (
        scripted_core(alice_steps, overrides=a_over) as (alice, _),
        scripted_core(bob_steps, overrides=b_over) as (bob, bob_model),
    ):
        await eventually(lambda: len(alice.group.members()) == 2, timeout=20)
        session = await alice.new_session()
        events = await run_turn(alice, session.id, "ask the coder")
        finished = [e for e in events if isinstance(e, ev.ToolCallFinished)]
        assert finished and finished[0].ok, finished
        assert "print('hello')" in finished[0].output and "[answer from bob]" in finished[0].output
        assert isinstance(events[-1], ev.TurnFinished) and events[-1].text == "Bob says: done"
        # Bob's turn was sent the task as its question, and ran in Alice's trace (one trace id on both machines).
        assert bob_model.calls and bob_model.calls[0][-1].content == "write hello in python"
        trace_id = events[0].trace_id
        bob_events = await bob.timeline.events(trace_id=trace_id)
        kinds = {e.kind for e in bob_events}
        assert {"group.received", "user.message", "llm.response", "group.sent"} <= kinds
        received = next(e for e in bob_events if e.kind == "group.received")
        bob_turn = next(e for e in bob_events if e.kind == "user.message")
        assert bob_turn.parent_span_id == received.span_id
        # Alice's side: the request hangs under the delegate tool call; the result came back into the same trace.
        alice_events = await alice.timeline.events(trace_id=trace_id)
        sent = next(e for e in alice_events if e.kind == "group.sent")
        call = next(e for e in alice_events if e.kind == "tool.call" and e.name == "delegate")
        assert sent.parent_span_id == call.span_id
        assert any(e.kind == "group.received" and e.name == "shoal.task.result" for e in alice_events)


async def test_a_kafka_python_peer_answers_a_task_shoal_dispatches(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = f"f{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **{f"SHOAL_{k.upper()}": str(v) for k, v in TEST_CLIENT_SETTINGS.items()}}
    args = ["--bootstrap", kafka_broker.bootstrap, "--group", group, "--skill", "upper", "--name", "py-peer"]
    log = (tmp_path / "peer.log").open("wb")
    peer = subprocess.Popen([sys.executable, str(EXAMPLES / "kafka_python_peer.py"), *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        over = group_overrides(kafka_broker, group, "shoal", tmp_path / "s")
        async with scripted_core(["unused"], overrides=over) as (core, _):
            await eventually(lambda: any(m.name == "py-peer" for m in core.group.members()), timeout=30)
            handle = await core.group.dispatch("tides turn", skill="upper", deadline=20)
            result = await handle.result()
            assert result.status == "ok", (result, (tmp_path / "peer.log").read_text()[-2000:])
            assert result.output == "TIDES TURN"
            await eventually(lambda: handle.accepted_by is not None, timeout=5)  # progress may follow the result
            assert handle.accepted_by and handle.accepted_by["name"] == "py-peer"
    finally:
        peer.terminate()
        peer.wait(10)
