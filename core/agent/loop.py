"""The agent loop: one user message in, a stream of recorded steps out.

A turn is one W3C trace. The user message is its root span; each model call, tool call, approval and
result is a child span of the step that caused it. Each step is committed to the timeline before the
front end is told, so what a person sees is always already on disk. Streamed text is shown as it
arrives and recorded whole when the model call ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core import events as ev
from core.agent.collect import CallCollector
from core.agent.context import estimate_tokens, fit_history
from core.agent.policy_steps import PolicySteps, who_payload
from core.errors import ToolError, classify
from core.policy.gate import PolicyGate
from core.policy.labels import Label
from core.policy.request import LOCAL, Requester
from core.providers.base import ChatMessage, GenerationOptions, Provider, TextDelta, ToolCall
from core.settings import AgentSettings
from core.timeline.ids import TraceContext, new_id
from core.timeline.sessions import SessionStore, insert_message
from core.timeline.store import Event, Timeline
from core.tools.executor import PreparedCall, ToolExecutor, ToolRun
from core.tools.registry import ApprovalDecision, ToolContext, ToolSpec

log = logging.getLogger(__name__)
# (question, remote) -> core.memory.recall_context.Recalled or None; remote: a task from a peer
Recaller = Callable[[str, bool], Awaitable[Any]]


@dataclass
class TurnState:
    session_id: str
    root: TraceContext
    correlation_id: str
    iterations: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    text: str = ""
    response_span: TraceContext | None = None  # the latest llm.response: parent of its tool calls
    error_parent: TraceContext | None = None  # the step a failure belongs to (default: the turn's root)
    answered: set[str] = field(default_factory=set)  # tool call ids whose result is recorded
    depth: int = 0  # delegation depth: 0 for a person's question, d + 1 for a task a peer delegated at depth d
    memories: str = ""  # recalled memories, appended to the system prompt for this turn
    requester: Requester = LOCAL  # who asked (a person here, or a peer for a task): what the policy decides on
    label: Label | None = None  # label of what the latest model call was sent (None without a policy)
    stored_label: Label | None = None  # the same as stored with what it makes (None: only the default, no policy)
    memory_labels: list[Label | None] = field(default_factory=list)  # labels of the recalled memories kept
    reservation: Any = None  # quota tokens booked for the model call under way (core.policy.quotas.Reservation)
    instructions: str = ""  # a client's own system message (shoal serve's /v1), appended to the system prompt


def _message_writer(
    session_id: str, message: ChatMessage, label: str | None = None
) -> Callable[[sqlite3.Connection, Event], None]:
    def write(conn: sqlite3.Connection, event: Event) -> None:
        insert_message(conn, session_id, message, event, label)

    return write


class Agent(PolicySteps):
    """Runs turns for any session. Stateless between turns: history lives in the session store."""

    def __init__(
        self,
        provider: Provider,
        executor: ToolExecutor,
        timeline: Timeline,
        sessions: SessionStore,
        settings: AgentSettings,
        options: GenerationOptions,
        tool_context: ToolContext,
        recall: Recaller | None = None,
        policy: PolicyGate | None = None,
    ) -> None:
        self.policy = policy  # labels, rules, quotas (core/policy/); None: no policy engine
        self.recall = recall  # automatic recall (core/memory/recall_context.py); None without memory
        self.provider = provider
        self.executor = executor
        self.timeline = timeline
        self.sessions = sessions
        self.settings = settings
        self.options = options
        self.tool_context = tool_context

    async def run_turn(
        self,
        session_id: str,
        user_text: str,
        *,
        regenerate: bool = False,
        parent: TraceContext | None = None,
        correlation_id: str | None = None,
        depth: int = 0,
        instructions: str = "",
        label: Label | str | None = None,
        requester: Requester | str | None = None,
        admitted: bool = False,
    ) -> AsyncIterator[ev.AgentEvent]:
        """Stream the events of one turn. Cancel the consuming task to stop it; the stop is recorded.
        With `regenerate`, the session's last question is answered again (the old answer is dropped).
        A task from a peer passes `parent` (the span that received it), its `correlation_id` and `depth`, so
        the turn continues the requester's trace instead of starting one, and `requester` (the peer).
        `label`: the message's sensitivity label as the person set it (else the classifier rules decide).
        `admitted`: the peer's rate limit was already applied (core/group/runtime.py)."""
        remote = parent is not None
        user_text, who, stored = await self._question(session_id, user_text, label, requester, remote=remote,
                                                      regenerate=regenerate)  # fmt: skip
        root = parent.child() if parent else TraceContext.new_root()
        state = TurnState(session_id, root, correlation_id=correlation_id or new_id(), depth=depth, requester=who)
        state.instructions = instructions
        user_msg = ChatMessage("user", user_text)
        started = await self._record(
            state,
            "user.message",
            root,
            payload={"text": user_text, "regenerate": regenerate, **who_payload(stored, who)},
            also=None if regenerate else _message_writer(session_id, user_msg, stored.value if stored else None),
        )
        yield ev.TurnStarted(session_id, root.trace_id, state.correlation_id, started.id)
        try:
            if not admitted:
                await self._admit(state)
            if self.recall is not None:
                recalled = await self._recalled(state, user_text, remote=remote)
                if recalled is not None:
                    yield recalled
            async for event in self._iterate(state):
                yield event
        except asyncio.CancelledError:
            finish = await asyncio.shield(self._finish(state, "cancelled"))
            yield finish
            raise
        except Exception as exc:
            error = classify(exc)
            log.warning("turn %s failed (%s): %s", root.trace_id, error.actor.value, error.message, exc_info=exc)
            parent = state.error_parent or root
            failed = await self._record(
                state, "error", parent.child(), status="error", name=type(error).__name__, payload=error.to_dict()
            )
            yield ev.TurnFailed(session_id, root.trace_id, error.to_dict(), failed.id)

    async def _iterate(self, state: TurnState) -> AsyncIterator[ev.AgentEvent]:
        tools = self.executor.registry.specs()
        while state.iterations < self.settings.max_iterations:
            state.iterations += 1
            collector = CallCollector()
            async for event in self._model_call(state, tools, collector):
                yield event
            if not collector.tool_calls:
                yield await self._finish(state, "ok")
                return
            calls = collector.tool_calls
            try:
                for call in calls:
                    async for event in self._tool_call(state, call, state.response_span):
                        yield event
            except BaseException:
                # Every tool call in the history needs a result, or the session's next model call is invalid.
                await asyncio.shield(self._close_unanswered(state, calls))
                raise
        yield await self._finish(state, "max_iterations")

    async def _close_unanswered(self, state: TurnState, calls: list[ToolCall]) -> None:
        for call in calls:
            if call.id in state.answered:
                continue
            text = "ERROR: stopped before this tool call finished; it may not have run."
            message = ChatMessage("tool", text, tool_call_id=call.id, name=call.name or "unknown")
            try:
                await self._record(
                    state,
                    "tool.result",
                    (state.response_span or state.root).child(),
                    name=call.name,
                    status="cancelled",
                    payload={"call_id": call.id, "output": text},
                    also=_message_writer(state.session_id, message),
                )
            except Exception:  # storage is failing too: the turn's own error says so
                log.exception("could not record the cancelled result of %s", call.id)
                return
            state.answered.add(call.id)

    async def _model_call(
        self, state: TurnState, tools: list[ToolSpec], collector: CallCollector
    ) -> AsyncIterator[ev.AgentEvent]:
        labelled = await self.sessions.labelled_messages(state.session_id)
        history = [message for message, _label in labelled]
        extras = [part for part in (state.instructions, state.memories) if part]
        prompt = "\n\n".join([self.settings.system_prompt, *extras])
        system = ChatMessage("system", prompt)
        tool_tokens = sum(estimate_tokens(ChatMessage("system", json.dumps(t.to_openai()))) for t in tools)
        messages, dropped = fit_history(
            system, history, self.provider.context_window, self.options.max_tokens, tool_tokens
        )
        estimate = sum(estimate_tokens(m) for m in messages) + tool_tokens
        routine = await self._check_model(state, labelled[dropped:], estimate)
        span = state.root.child()
        request = await self._record(
            state,
            "llm.request",
            span,
            name=self.provider.model_id,
            model=self.provider.model_id,
            payload={
                "iteration": state.iterations,
                "messages": len(messages),
                "dropped_messages": dropped,
                "tools": [t.name for t in tools],
                "options": vars(self.options),
                **({"policy": routine} if routine else {}),
            },
        )
        yield ev.LlmCallStarted(state.iterations, self.provider.model_id, request.id)
        stream = self.provider.stream(messages, tools, self.options)
        try:
            async for chunk in stream:
                collector.add(chunk)
                if isinstance(chunk, TextDelta) and chunk.text:
                    yield ev.AssistantDelta(chunk.text)
        except asyncio.CancelledError:
            await asyncio.shield(self._record_response(state, span, collector, status="cancelled"))
            raise
        except Exception:
            # keep what the person already saw, and hang the failure under this call
            try:
                await self._record_response(state, span, collector, status="error")
                state.error_parent = state.response_span
            except Exception:
                log.exception("could not record the failed model call")
                state.error_parent = span
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            await asyncio.shield(self._settle(state, collector))
        response = await self._record_response(state, span, collector, status="ok")
        usage = collector.usage
        yield ev.LlmCallFinished(
            state.iterations,
            self.provider.model_id,
            usage.input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
            collector.duration_ms,
            collector.first_token_ms,
            usage.finish_reason if usage else "stop",
            response.id,
        )

    async def _record_response(
        self, state: TurnState, request_span: TraceContext, collector: CallCollector, *, status: str
    ) -> Event:
        usage = collector.usage
        state.input_tokens += usage.input_tokens if usage else 0
        state.output_tokens += usage.output_tokens if usage else 0
        state.text = collector.text
        calls = collector.tool_calls
        # A call that did not finish cleanly keeps its text but not its (possibly half-written) tool calls.
        message = ChatMessage("assistant", collector.text, tool_calls=calls if status == "ok" else [])
        keep = status == "ok" or bool(collector.text)
        label = state.stored_label.value if state.stored_label else None
        span = request_span.child()
        event = await self._record(
            state,
            "llm.response",
            span,
            name=self.provider.model_id,
            status=status,
            model=self.provider.model_id,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            duration_ms=collector.duration_ms,
            payload={
                "text": collector.text,
                "tool_calls": [vars(c) for c in calls],
                "finish_reason": usage.finish_reason if usage else status,
                "tokens_estimated": usage.estimated if usage else True,
                "first_token_ms": collector.first_token_ms,
            },
            also=_message_writer(state.session_id, message, label) if keep else None,
        )
        state.response_span = span
        return event

    async def _tool_call(
        self, state: TurnState, call: ToolCall, parent: TraceContext | None
    ) -> AsyncIterator[ev.AgentEvent]:
        span = (parent or state.root).child()
        try:
            prepared = self.executor.prepare(call)
        except ToolError as exc:
            started = await self._record(
                state, "tool.call", span, name=call.name or "?", status="error", payload={"raw": vars(call)}
            )
            yield ev.ToolCallStarted(call.id, call.name, {}, "unknown", started.id)
            async for event in self._tool_result(state, call, span, ToolRun(False, None, exc, 0.0)):
                yield event
            return
        verdict = self._tool_decision(state, prepared)
        routine = {"policy": verdict.payload()} if verdict is not None and verdict.routine else {}
        started = await self._record(
            state,
            "tool.call",
            span,
            name=call.name,
            payload={"call_id": call.id, "arguments": prepared.args, "risk": prepared.risk.value, **routine},
        )
        yield ev.ToolCallStarted(call.id, call.name, prepared.args, prepared.risk.value, started.id)
        run: ToolRun | None = None
        if verdict is not None and not verdict.routine:
            await self._decided(state, verdict, span)
        standing = self.executor.standing_approval(prepared, state.session_id, verdict)
        if verdict is not None and verdict.denied:
            run = self.executor.refused(verdict)
        elif standing != "not_required":
            summary = prepared.tool.approval_summary(prepared.args)
            decision = standing or (await self.executor.ask(prepared, state.session_id)).value
            rule = {"rule": verdict.rule.name} if verdict is not None else {}
            approval = await self._record(
                state,
                "approval",
                span.child(),
                name=call.name,
                status="denied" if decision == ApprovalDecision.DENY.value else "ok",
                payload={"decision": decision, "summary": summary, "risk": prepared.risk.value, **rule},
            )
            yield ev.ApprovalResolved(call.id, call.name, decision, summary, approval.id)
            if decision == ApprovalDecision.DENY.value:
                run = self.executor.denied(prepared)
        if run is None:
            run = await self.executor.run(prepared, self._tool_ctx(state, span))
        async for event in self._tool_result(state, call, span, run, prepared):
            yield event

    async def _tool_result(
        self, state: TurnState, call: ToolCall, span: TraceContext, run: ToolRun, prepared: PreparedCall | None = None
    ) -> AsyncIterator[ev.AgentEvent]:
        text = run.text_for_model
        label = self._result_label(prepared, text, run.output.data if run.output else None)
        message = ChatMessage("tool", text, tool_call_id=call.id, name=call.name or "unknown")
        payload: dict[str, object] = {"call_id": call.id, "output": text}
        if run.output is not None:
            payload["data"] = run.output.data
        if run.error is not None:
            payload["error"] = run.error.to_dict()
        result = await self._record(
            state,
            "tool.result",
            span.child(),
            name=call.name,
            status="ok" if run.ok else "error",
            duration_ms=run.duration_ms,
            payload=payload,
            also=_message_writer(state.session_id, message, label),
        )
        state.answered.add(call.id)
        error = None if run.error is None else run.error.describe()
        yield ev.ToolCallFinished(call.id, call.name, run.ok, text, error, run.duration_ms, result.id)

    async def _finish(self, state: TurnState, status: str) -> ev.TurnFinished:
        payload: dict[str, object] = {
            "iterations": state.iterations,
            "input_tokens": state.input_tokens,
            "output_tokens": state.output_tokens,
        }
        if status == "max_iterations":
            payload["error"] = (
                f"Stopped after {self.settings.max_iterations} model calls without a final answer; "
                "raise agent.max_iterations or ask for a smaller step."
            )
        event = await self._record(state, "turn.end", state.root.child(), status=status, payload=payload)
        return ev.TurnFinished(
            state.session_id,
            state.root.trace_id,
            state.text,
            status,
            state.iterations,
            state.input_tokens,
            state.output_tokens,
            event.id,
        )

    async def _record(self, state: TurnState, kind: str, trace: TraceContext, **fields: object) -> Event:
        return await self.timeline.record(
            kind,
            session_id=state.session_id,
            trace=trace,
            correlation_id=state.correlation_id,
            **fields,  # type: ignore[arg-type]
        )
