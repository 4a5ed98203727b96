"""The bridge turns core events into Qt signals, on a qasync loop."""

from __future__ import annotations

from core import events as ev
from core.providers.scripted import tool_call
from core.tools.registry import ApprovalDecision
from tests.ui.conftest import scripted_bridge, wait_until


async def test_a_turn_arrives_as_signals() -> None:
    async with scripted_bridge(["Hello from the bridge."]) as (bridge, _):
        deltas: list[str] = []
        ended: list[object] = []
        live: list[str] = []
        bridge.assistantDelta.connect(lambda sid, text: deltas.append(text))
        bridge.turnEnded.connect(lambda sid, final: ended.append(final))
        bridge.timelineEvent.connect(lambda event: live.append(event.kind))
        session = await bridge.new_session()
        bridge.send(session.id, "hi")
        await wait_until(lambda: bool(ended))
        assert "".join(deltas) == "Hello from the bridge."
        assert isinstance(ended[0], ev.TurnFinished) and ended[0].status == "ok"
        assert live == ["user.message", "llm.request", "llm.response", "turn.end"]
        [_question, entry_answer] = await bridge.transcript(session.id)
        assert entry_answer.model == "scripted" and entry_answer.output_tokens is not None


async def test_approvals_from_the_bridge() -> None:
    async with scripted_bridge([[tool_call("shell", {"command": "echo ok"})], "done"]) as (bridge, _):
        changed: list[int] = []
        bridge.approvalsChanged.connect(lambda: changed.append(len(bridge.pending_approvals())))
        session = await bridge.new_session()
        bridge.send(session.id, "run")
        await wait_until(lambda: bool(bridge.pending_approvals()))
        [pending] = bridge.pending_approvals()
        assert bridge.resolve_approval(pending.id, ApprovalDecision.APPROVE_ONCE)
        await wait_until(lambda: not bridge.is_busy(session.id))
        assert changed == [1, 0]


async def test_deleting_a_thread_while_it_streams_stops_the_turn_cleanly() -> None:
    from core.providers.base import TextDelta

    async with scripted_bridge([[TextDelta("x ") for _ in range(1000)]], delay=0.005) as (bridge, _):
        ended: list[object] = []
        deltas: list[str] = []
        bridge.turnEnded.connect(lambda sid, final: ended.append(final))
        bridge.assistantDelta.connect(lambda sid, text: deltas.append(text))
        session = await bridge.new_session()
        bridge.send(session.id, "talk")
        await wait_until(lambda: len(deltas) > 3)  # mid-answer
        await bridge.delete_session(session.id)
        await wait_until(lambda: bool(ended))
        assert isinstance(ended[0], ev.TurnFinished) and ended[0].status == "cancelled"
        assert session.id not in {s.id for s in await bridge.sessions()}
