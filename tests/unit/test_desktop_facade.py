"""Core features the desktop uses: pins, delete, regenerate, export, live timeline, approval broker."""

from __future__ import annotations

import asyncio
import json

from core import events as ev
from core.approvals import ApprovalBroker
from core.export import to_json, to_markdown
from core.providers.base import TextDelta
from core.providers.scripted import ScriptedProvider, tool_call
from core.timeline.store import Event
from core.tools.registry import ApprovalDecision
from tests.fixtures.cores import run_turn, scripted_core


async def test_pinned_sessions_come_first_and_delete_removes_everything() -> None:
    async with scripted_core(["a", "b"]) as (core, _):
        old = await core.new_session("old")
        await run_turn(core, old.id, "first")
        new = await core.new_session("new")
        await run_turn(core, new.id, "second")
        assert [s.id for s in await core.sessions.recent()] == [new.id, old.id]
        await core.sessions.set_pinned(old.id, True)
        listed = await core.sessions.recent()
        assert [s.id for s in listed] == [old.id, new.id] and listed[0].pinned
        await core.sessions.delete(old.id)
        assert [s.id for s in await core.sessions.recent()] == [new.id]
        assert await core.timeline.events(session_id=old.id) == []
        assert await core.sessions.search("first") == []


async def test_regenerate_answers_the_last_question_again() -> None:
    async with scripted_core(["first try", "second try"]) as (core, provider):
        session = await core.new_session()
        await run_turn(core, session.id, "tell me a joke")
        events = [e async for e in core.send(session.id, "", regenerate=True)]
        assert isinstance(events[-1], ev.TurnFinished) and events[-1].text == "second try"
        history = [(m.role, m.content) for m in await core.sessions.messages(session.id)]
        assert history == [("user", "tell me a joke"), ("assistant", "second try")]
        assert [m.content for m in provider.calls[1][1:]] == ["tell me a joke"]


async def test_export_markdown_and_json() -> None:
    steps = [[tool_call("list_dir", {"path": "."})], "Here is `code`:\n\n```py\nprint(1)\n```"]
    async with scripted_core(steps) as (core, _):
        session = await core.new_session("Export me")
        await run_turn(core, session.id, "show me")
        data = await core.export_session(session.id)
        parsed = json.loads(to_json(data))
        assert parsed["format"] == "shoal.session" and [m["role"] for m in parsed["messages"]] == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        markdown = to_markdown(data)
        assert markdown.startswith("# Export me\n") and "## You\n\nshow me" in markdown
        assert "> **tool call** `list_dir`" in markdown and "```py\nprint(1)\n```" in markdown
        assert markdown.count("```") % 2 == 0  # every fence is closed


async def test_timeline_listeners_see_each_event_after_commit() -> None:
    async with scripted_core(["hi"]) as (core, _):
        seen: list[Event] = []
        core.timeline.add_listener(seen.append)
        session = await core.new_session()
        await run_turn(core, session.id, "hello")
        assert [e.kind for e in seen] == ["user.message", "llm.request", "llm.response", "turn.end"]
        assert all(await asyncio.gather(*(core.timeline.get(e.id) for e in seen)))


async def test_approval_broker_queues_questions_until_answered() -> None:
    broker = ApprovalBroker()
    changes: list[str] = []
    broker.add_listener(lambda change, item: changes.append(change))
    steps = [[tool_call("shell", {"command": "echo hi"})], "done"]
    async with scripted_core(steps, approve=broker.ask) as (core, _):
        session = await core.new_session()
        turn = core.send(session.id, "run it")
        while not broker.pending:
            await asyncio.sleep(0.01)
        [pending] = broker.pending.values()
        assert pending.request.summary == "echo hi"
        assert broker.resolve(pending.id, ApprovalDecision.APPROVE_ONCE)
        assert not broker.resolve(pending.id, ApprovalDecision.DENY)  # answered once only
        events = [e async for e in turn]
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert result.ok and "hi" in result.output
    assert changes == ["added", "resolved"] and broker.pending == {}


async def test_a_stopped_turn_withdraws_its_question() -> None:
    broker = ApprovalBroker()
    async with scripted_core([[tool_call("shell", {"command": "ls"})]], approve=broker.ask) as (core, _):
        session = await core.new_session()
        turn = core.send(session.id, "run it")
        while not broker.pending:
            await asyncio.sleep(0.01)
        turn.cancel()
        await turn.result()
        assert broker.pending == {}


async def test_applied_settings_take_effect_on_the_next_turn() -> None:
    from core.settings import load_settings

    async with scripted_core(["one", "two"]) as (core, provider):
        session = await core.new_session()
        await run_turn(core, session.id, "first")
        changed = load_settings(None, {"agent": {"system_prompt": "Be terse."}, "tools": {"disabled": ["shell"]}})
        await core.apply_settings(changed.settings)
        await run_turn(core, session.id, "second")
        assert provider.calls[-1][0].content == "Be terse."
        assert "shell" not in provider.tools_seen[-1] and "shell" in provider.tools_seen[0]
        assert not core.tool_enabled("shell")


class _Recording(ScriptedProvider):
    def __init__(self, steps, log: list[str], name: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(steps)
        self.log, self.label = log, name

    async def stop(self) -> None:
        self.log.append(f"{self.label} stopped")


async def test_generation_changes_keep_the_model_and_load_changes_release_it_after_running_turns() -> None:
    from core.service import AgentCore
    from core.settings import load_settings

    log: list[str] = []
    core = AgentCore(load_settings(None, {"model": {"path": "/m/a.gguf"}}).settings)
    await core.start()
    try:
        core._provider = _Recording([[TextDelta("x ") for _ in range(200)]], log, "a")
        session = await core.new_session()
        await core.apply_settings(load_settings(None, {"model": {"path": "/m/a.gguf", "temperature": 0.1}}).settings)
        assert log == [] and core._provider is not None  # temperature alone: no reload
        core._provider._delay = 0.005
        turn = core.send(session.id, "go")
        await asyncio.sleep(0.05)
        await core.apply_settings(load_settings(None, {"model": {"path": "/m/b.gguf"}}).settings)
        assert log == [] and core._provider is None  # released only when the running turn ends
        await turn.result()
        await asyncio.sleep(0.05)
        assert log == ["a stopped"]
    finally:
        await core.stop()
