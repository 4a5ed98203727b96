"""The agent loop over a scripted provider: real SQLite, real tools, deterministic model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from core import events as ev
from core.errors import EndpointUnreachableError
from core.providers.base import TextDelta, ToolCallDelta, Usage
from core.providers.scripted import tool_call
from core.tools.registry import ApprovalDecision, ApprovalRequest
from tests.fixtures.cores import approver, run_turn, scripted_core


def kinds(events: list[ev.AgentEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


async def test_plain_answer_streams_and_is_recorded() -> None:
    async with scripted_core(["Hello there, friend."]) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "hi")
        text = "".join(e.text for e in events if isinstance(e, ev.AssistantDelta))
        assert text == "Hello there, friend."
        assert len([e for e in events if isinstance(e, ev.AssistantDelta)]) > 1  # really streamed
        final = events[-1]
        assert isinstance(final, ev.TurnFinished) and final.status == "ok" and final.text == text
        history = await core.sessions.messages(session.id)
        assert [(m.role, m.content) for m in history] == [("user", "hi"), ("assistant", text)]
        recorded = await core.timeline.events(trace_id=final.trace_id)
        assert [e.kind for e in recorded] == ["user.message", "llm.request", "llm.response", "turn.end"]
        assert provider.calls[0][0].role == "system"


async def test_every_step_is_on_disk_before_it_is_shown() -> None:
    async with scripted_core([[tool_call("list_dir", {"path": "."})], "done"]) as (core, _):
        session = await core.new_session()
        async for event in core.send(session.id, "look around"):
            event_id = getattr(event, "event_id", None)
            if event_id:
                assert await core.timeline.get(event_id) is not None, event


async def test_tool_call_result_then_answer(workspace: Path) -> None:
    (workspace / "notes.txt").write_text("the tide is at 6pm")
    steps = [[tool_call("read_file", {"path": "notes.txt"})], "The tide is at 6pm."]
    async with scripted_core(steps) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "when is the tide?")
        finished = [e for e in events if isinstance(e, ev.ToolCallFinished)]
        assert finished and finished[0].ok and "6pm" in finished[0].output
        assert isinstance(events[-1], ev.TurnFinished) and events[-1].iterations == 2
        second_call = provider.calls[1]
        assert second_call[-1].role == "tool" and "6pm" in second_call[-1].content
        assert second_call[-2].role == "assistant" and second_call[-2].tool_calls[0].name == "read_file"


async def test_turn_is_one_tree_that_walks_back_to_origin(workspace: Path) -> None:
    (workspace / "a.txt").write_text("alpha")
    async with scripted_core([[tool_call("read_file", {"path": "a.txt"})], "alpha it is"]) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "read a")
        trace_id = events[0].trace_id  # type: ignore[union-attr]
        roots = await core.timeline.trace_tree(trace_id)
        assert len(roots) == 1 and roots[0].event.kind == "user.message"
        children = [c.event.kind for c in roots[0].children]
        assert children == ["llm.request", "llm.request", "turn.end"]
        response = roots[0].children[0].children[0]
        assert response.event.kind == "llm.response"
        tool = response.children[0]
        assert tool.event.kind == "tool.call" and [c.event.kind for c in tool.children] == ["tool.result"]
        chain = await core.timeline.walk_to_origin(tool.children[0].event.id)
        assert [e.kind for e in chain] == ["tool.result", "tool.call", "llm.response", "llm.request", "user.message"]
        assert all(len(e.trace_id) == 32 and len(e.span_id) == 16 for e in chain)


async def test_max_iterations_bound_stops_a_looping_model() -> None:
    steps = [[tool_call("list_dir", {"path": "."})] for _ in range(3)]
    async with scripted_core(steps, overrides={"agent": {"max_iterations": 3}}) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "loop forever")
        final = events[-1]
        assert isinstance(final, ev.TurnFinished) and final.status == "max_iterations" and final.iterations == 3
        assert len(provider.calls) == 3
        end = await core.timeline.get(final.event_id)
        assert end is not None and "max_iterations" in end.payload["error"]


async def test_tool_that_raises_is_reported_to_the_model_and_turn_continues() -> None:
    steps = [[tool_call("read_file", {"path": "missing.txt"})], "It does not exist."]
    async with scripted_core(steps) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "read missing")
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert not result.ok and result.error
        assert provider.calls[1][-1].content.startswith("ERROR:")
        assert isinstance(events[-1], ev.TurnFinished) and events[-1].status == "ok"


async def test_denied_approval_never_runs_the_shell(workspace: Path) -> None:
    seen: list[ApprovalRequest] = []
    steps = [[tool_call("shell", {"command": "touch created.txt"})], "OK, I won't."]
    async with scripted_core(steps, approve=approver(ApprovalDecision.DENY, seen)) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "make a file")
        assert seen and seen[0].summary == "touch created.txt"
        approval = next(e for e in events if isinstance(e, ev.ApprovalResolved))
        assert approval.decision == "deny"
        assert not (workspace / "created.txt").exists()
        assert "did not approve" in provider.calls[1][-1].content
        recorded = await core.timeline.get(approval.event_id)
        assert recorded is not None and recorded.kind == "approval" and recorded.status == "denied"


async def test_session_approval_is_asked_once(workspace: Path) -> None:
    seen: list[ApprovalRequest] = []
    steps = [
        [tool_call("shell", {"command": "touch one.txt"})],
        [tool_call("shell", {"command": "touch two.txt"})],
        "both made",
    ]
    async with scripted_core(steps, approve=approver(ApprovalDecision.APPROVE_SESSION, seen)) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "make two files")
        assert len(seen) == 1
        assert [e.decision for e in events if isinstance(e, ev.ApprovalResolved)] == ["approve_session", "session"]
        assert (workspace / "one.txt").exists() and (workspace / "two.txt").exists()


async def test_malformed_tool_call_json_is_an_error_the_model_sees() -> None:
    steps = [[ToolCallDelta(0, "c1", "read_file", '{"path": "a.txt"')], "Sorry."]
    async with scripted_core(steps) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "go")
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert not result.ok and "not valid JSON" in (result.error or "")
        assert "not valid JSON" in provider.calls[1][-1].content
        assert isinstance(events[-1], ev.TurnFinished)


async def test_unknown_tool_and_invalid_arguments_are_refused() -> None:
    steps = [[tool_call("launch_rockets", {}), tool_call("read_file", {"nope": 1}, index=1)], "ok"]
    async with scripted_core(steps) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "go")
        errors = [e.error or "" for e in events if isinstance(e, ev.ToolCallFinished)]
        assert "No tool named 'launch_rockets'" in errors[0]
        assert "Invalid arguments" in errors[1]


async def test_provider_failure_fails_the_turn_and_leaves_no_half_answer() -> None:
    boom = EndpointUnreachableError("Cannot reach http://127.0.0.1:9", "Start the server.")
    async with scripted_core([boom]) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "hello?")
        failed = events[-1]
        assert isinstance(failed, ev.TurnFailed)
        assert failed.error["actor"] == "network" and failed.error["fix"] == "Start the server."
        history = await core.sessions.messages(session.id)
        assert [m.role for m in history] == ["user"]  # no empty or partial assistant message
        recorded = await core.timeline.get(failed.event_id)
        assert recorded is not None and recorded.kind == "error"


async def test_cancel_stops_promptly_and_is_recorded() -> None:
    long_answer = [TextDelta("word ") for _ in range(2000)]
    async with scripted_core([long_answer], delay=0.005) as (core, _):
        session = await core.new_session()
        turn = core.send(session.id, "talk a lot")
        seen = 0
        async for event in turn:
            if isinstance(event, ev.AssistantDelta):
                seen += 1
                if seen == 5:
                    turn.cancel()
        final = await asyncio.wait_for(turn.result(), 2)
        assert isinstance(final, ev.TurnFinished) and final.status == "cancelled"
        assert seen < 50
        response = (await core.timeline.events(session_id=session.id, kind="llm.response"))[0]
        assert response.status == "cancelled" and response.payload["text"].startswith("word word")


async def test_token_accounting_per_call_and_per_turn() -> None:
    steps = [
        [tool_call("list_dir", {"path": "."}), Usage(100, 7, "tool_calls")],
        [TextDelta("fine"), Usage(130, 2)],
    ]
    async with scripted_core(steps) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "count")
        calls = [e for e in events if isinstance(e, ev.LlmCallFinished)]
        assert [(c.input_tokens, c.output_tokens) for c in calls] == [(100, 7), (130, 2)]
        final = events[-1]
        assert isinstance(final, ev.TurnFinished) and (final.input_tokens, final.output_tokens) == (230, 9)
        responses = await core.timeline.events(session_id=session.id, kind="llm.response")
        assert [(r.input_tokens, r.output_tokens) for r in responses] == [(100, 7), (130, 2)]


async def test_history_carries_over_between_turns() -> None:
    async with scripted_core(["first answer", "second answer"]) as (core, provider):
        session = await core.new_session()
        await run_turn(core, session.id, "first question")
        await run_turn(core, session.id, "second question")
        sent = [(m.role, m.content) for m in provider.calls[1]]
        assert sent[1:] == [
            ("user", "first question"),
            ("assistant", "first answer"),
            ("user", "second question"),
        ]
        hits = await core.sessions.search("second")
        assert {h.seq for h in hits} == {3, 4}


async def test_empty_message_is_refused_before_anything_is_written() -> None:
    async with scripted_core(["unused"]) as (core, _):
        session = await core.new_session()
        turn = core.send(session.id, "   ")
        try:
            async for _ in turn:
                pass
            raise AssertionError("expected a UserError")
        except Exception as exc:
            assert "empty" in str(exc)
        assert await core.timeline.events(session_id=session.id) == []


async def test_tool_call_text_arguments_round_trip_as_json() -> None:
    steps = [
        [tool_call("remember", {"text": "likes tea", "tags": ["drink"]})],
        [tool_call("recall", {"query": "tea"})],
        "tea",
    ]
    async with scripted_core(steps) as (core, provider):
        session = await core.new_session()
        events = await run_turn(core, session.id, "remember I like tea, then check")
        outputs = [e.output for e in events if isinstance(e, ev.ToolCallFinished)]
        assert outputs[0].startswith("Remembered") and "likes tea" in outputs[1]
        assert json.loads(provider.calls[1][-2].tool_calls[0].arguments)["tags"] == ["drink"]


async def test_an_untitled_session_is_named_after_its_first_question() -> None:
    async with scripted_core(["a", "b", "c"]) as (core, _):
        session = await core.new_session()
        await run_turn(core, session.id, "  Where do   puffins nest?  ")
        await run_turn(core, session.id, "And gannets?")
        assert (await core.sessions.get(session.id)).title == "Where do puffins nest?"
        named = await core.new_session("Birds")
        await run_turn(core, named.id, "x")  # an explicit title is kept
        assert (await core.sessions.get(named.id)).title == "Birds"


async def test_sessions_sum_their_tokens() -> None:
    async with scripted_core([[TextDelta("a"), Usage(10, 1)], [TextDelta("b"), Usage(20, 2)]]) as (core, _):
        session = await core.new_session()
        await run_turn(core, session.id, "one")
        await run_turn(core, session.id, "two")
        info = await core.sessions.get(session.id)
        assert (info.input_tokens, info.output_tokens, info.message_count) == (30, 3, 4)
        assert [s.id for s in await core.sessions.recent()] == [session.id]


def assert_history_is_valid(history: list) -> None:  # type: ignore[type-arg]
    """Every assistant tool call is answered by a tool message: what OpenAI-compatible APIs require."""
    answered = {m.tool_call_id for m in history if m.role == "tool"}
    asked = {c.id for m in history if m.role == "assistant" for c in m.tool_calls}
    assert asked <= answered, (asked, answered)


async def test_cancel_while_waiting_for_approval_leaves_a_valid_history() -> None:
    asked = asyncio.Event()

    async def slow_person(request: ApprovalRequest) -> ApprovalDecision:
        asked.set()
        await asyncio.sleep(60)
        return ApprovalDecision.APPROVE_ONCE

    steps = [[tool_call("shell", {"command": "ls"}), tool_call("list_dir", {}, index=1)], "next answer"]
    async with scripted_core(steps, approve=slow_person) as (core, provider):
        session = await core.new_session()
        turn = core.send(session.id, "list files")
        await asyncio.wait_for(asked.wait(), 5)
        turn.cancel()
        final = await asyncio.wait_for(turn.result(), 5)
        assert isinstance(final, ev.TurnFinished) and final.status == "cancelled"
        history = await core.sessions.messages(session.id)
        assert_history_is_valid(history)
        results = await core.timeline.events(session_id=session.id, kind="tool.result")
        assert {r.status for r in results} == {"cancelled"} and len(results) == 2
        await run_turn(core, session.id, "try again")  # the next call is sent a well-formed history
        assert_history_is_valid(provider.calls[-1])


async def test_an_approval_callback_that_fails_counts_as_denied(workspace: Path) -> None:
    async def broken(request: ApprovalRequest) -> ApprovalDecision:
        raise EOFError("terminal closed")

    steps = [[tool_call("shell", {"command": "touch x.txt"})], "ok"]
    async with scripted_core(steps, approve=broken) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "go")
        assert [e.decision for e in events if isinstance(e, ev.ApprovalResolved)] == ["deny"]
        assert isinstance(events[-1], ev.TurnFinished) and not (workspace / "x.txt").exists()


async def test_a_failure_mid_stream_keeps_the_text_shown_and_hangs_the_error_under_the_call() -> None:
    dropped = EndpointUnreachableError("Connection dropped", "Retry.")
    async with scripted_core([[TextDelta("The answer is 4"), dropped]]) as (core, _):
        session = await core.new_session()
        events = await run_turn(core, session.id, "2+2?")
        failed = events[-1]
        assert isinstance(failed, ev.TurnFailed)
        chain = await core.timeline.walk_to_origin(failed.event_id)
        assert [e.kind for e in chain] == ["error", "llm.response", "llm.request", "user.message"]
        assert chain[1].status == "error" and chain[1].payload["text"] == "The answer is 4"
        assert [(m.role, m.content) for m in await core.sessions.messages(session.id)] == [
            ("user", "2+2?"),
            ("assistant", "The answer is 4"),
        ]
