"""The policy's steps in a turn (mixed into `Agent`): the question's label, admitting a peer's task, recalling
memories and screening them, checking each model call (labels, rules, what a requesting peer may get back, quotas) and
each tool call, and recording every decision.

A decision by a built-in default that restates what Shoal always did for local use (the local model sees
everything, a low-risk tool runs, a high-risk one asks) is recorded inside the step it gates (`policy` in the
`llm.request` / `tool.call` payload), so a local turn's timeline keeps its shape; every other decision (a
rule of yours, anything remote, any denial) is a `policy.decision` event of its own, and a person's answer to
a rule's `ask` is an `approval` event under it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from core import events as ev
from core.errors import PolicyDenied, UserError
from core.policy.engine import Decision
from core.policy.gate import PolicyGate
from core.policy.labels import Label, lenient_label, parse_label
from core.policy.request import LOCAL, Requester
from core.providers.base import ChatMessage, estimate_tokens
from core.timeline.ids import TraceContext
from core.timeline.store import Event

if TYPE_CHECKING:
    from core.agent.collect import CallCollector
    from core.agent.loop import TurnState
    from core.timeline.sessions import SessionStore
    from core.tools.executor import PreparedCall, ToolExecutor
    from core.tools.registry import ToolContext

log = logging.getLogger(__name__)
Labelled = list[tuple[ChatMessage, str | None]]


def who_payload(label: Label | None, requester: Requester) -> dict[str, str]:
    """The user.message payload's policy part: the label it was stored with, who asked (when not local)."""
    return {
        **({"label": label.value} if label else {}),
        **({"requester": str(requester)} if requester != LOCAL else {}),
    }


def _local_content(labelled: Labelled) -> list[int]:
    """Indexes of what this agent adds to a peer's task: everything but the turn's question (the peer's own
    message) and the answers written in this turn (made from what was checked before each of them)."""
    last = max((n for n, (message, _label) in enumerate(labelled) if message.role == "user"), default=-1)
    if last < 0:
        return list(range(len(labelled)))
    return [n for n, (message, _l) in enumerate(labelled) if n < last or (n > last and message.role != "assistant")]


class PolicySteps:
    policy: PolicyGate | None
    recall: Callable[[str, bool], Awaitable[Any]] | None
    executor: ToolExecutor
    sessions: SessionStore
    tool_context: ToolContext
    _record: Callable[..., Awaitable[Event]]

    async def _question(
        self, session_id: str, text: str, label: Label | str | None, requester: Requester | str | None, *,
        remote: bool, regenerate: bool,
    ) -> tuple[str, Requester, Label | None]:  # fmt: skip
        """The question (the session's last one again, with `regenerate`), who asked, and its label. On
        regenerate, a label given now raises the stored one before anything is checked, and the label that
        applies is what the turn records."""
        if regenerate:
            text = await self.sessions.rewind_to_last_question(session_id)
        if not text.strip():
            raise UserError("The message is empty.", "Type something to ask.")
        who, stored = self._asker(text, label, requester, remote=remote)
        if regenerate:
            existing = lenient_label(await self.sessions.question_label(session_id))
            if label and stored is not None and (existing is None or stored > existing):
                await self.sessions.question_label(session_id, stored.value)
            elif existing is not None or label:
                stored = existing
        return text, who, stored

    def _asker(
        self, text: str, label: Label | str | None, requester: Requester | str | None, *, remote: bool
    ) -> tuple[Requester, Label | None]:
        """Who asked (a peer's task without a named requester is still a peer's), and the label to store with the
        message: the person's, else the classifier's (None: unlabelled). A bad label is a UserError up front. A
        peer's label can only raise what this agent's own classifier rules say, never lower it."""
        who = Requester.parse(requester) if requester is not None or not remote else Requester("peer")
        if self.policy is None:
            return who, parse_label(label) if label else None
        if who.remote and label:
            found = [x for x in (parse_label(label), self.policy.message_label(text, None)) if x is not None]
            return who, max(found, key=lambda x: x.rank)
        return who, self.policy.message_label(text, label)

    async def _decided(self, state: TurnState, decision: Decision, parent: TraceContext, **extra: Any) -> Event:
        """Record one decision as a `policy.decision` event under the step it concerns."""
        fields = decision.event_fields()
        fields["payload"].update(extra)
        return await self._record(state, "policy.decision", parent.child(), **fields)

    def _tool_ctx(self, state: TurnState, span: TraceContext) -> ToolContext:
        """What a tool running in this turn knows: where it sits in the trace, the turn's label as stored, who
        asked, the policy, and how to record a decision it makes (under its tool call)."""
        from core.tools.registry import ToolContext

        async def decided(decision: Decision, **extra: Any) -> Event:
            return await self._decided(state, decision, span, **extra)

        return ToolContext(
            self.tool_context.workspace,
            state.session_id,
            self.tool_context.settings,
            trace=span,
            correlation_id=state.correlation_id,
            depth=state.depth,
            label=state.stored_label.value if state.stored_label else "",
            requester=state.requester,
            policy=self.policy,
            decided=decided,
        )

    async def _admit(self, state: TurnState) -> None:
        """A task from a peer counts against that peer's rate limits before anything runs."""
        if self.policy is None:
            return
        decision = self.policy.admit(state.requester)
        if decision is not None and not decision.allowed:
            await self._decided(state, decision, state.root)
            raise decision.error()

    async def _recalled(self, state: TurnState, question: str, *, remote: bool) -> ev.MemoryRecalled | None:
        """Put relevant memories into this turn's context, leaving out what the policy withholds, and record
        which ones (they are cited by number)."""
        assert self.recall is not None
        recalled = await self.recall(question, remote)
        if recalled is not None:
            recalled = await self._screen(state, recalled)
        if recalled is None:
            return None
        state.memories = recalled.block
        items = recalled.items()
        event = await self._record(state, "memory.recall", state.root.child(), name=f"{len(items)} memories",
                                   payload={"items": items})  # fmt: skip
        return ev.MemoryRecalled(items, event.id)

    async def _screen(self, state: TurnState, recalled: Any) -> Any:
        """Recalled memories the model (or the requesting peer) may not see are left out, and that is recorded."""
        if self.policy is None:
            return recalled
        screened = self.policy.screen(recalled, state.requester)
        for decision, memory_ids in screened.withheld:
            await self._decided(state, decision, state.root, memory_ids=memory_ids, withheld=True)
        state.memory_labels = screened.labels
        return screened.recalled

    async def _check_model(self, state: TurnState, labelled: Labelled, estimate: int) -> dict[str, Any] | None:
        """Decide whether what is about to be sent (these messages, the client's instructions and the recalled
        memories) may go to the model; for a peer's task, whether what this agent added to it (tool results,
        memories, earlier history: not the peer's own question) may go back to that peer; then book `estimate`
        tokens against the quotas. Raises PolicyDenied or QuotaExceeded; returns a routine decision's payload for
        the `llm.request` event (None when it was recorded on its own, or without a policy)."""
        if self.policy is None:
            return None
        gate = self.policy
        labels = gate.message_labels(labelled)
        extra = [gate.engine.stored_label(state.instructions)] if state.instructions else []
        everything = [*labels, *extra, *state.memory_labels]
        state.label, state.stored_label = gate.label_of(everything), gate.known(everything)
        decision = gate.model(state.label, state.requester)
        await self._enforce(state, decision)
        if state.requester.remote:
            local = [labels[n] for n in _local_content(labelled)] + extra + state.memory_labels
            if local:  # nothing of this agent's in the context yet: nothing to decide
                await self._enforce(state, gate.peer(gate.label_of(local), state.requester))
        quota, state.reservation = await gate.reserve(state.label, state.requester, estimate)
        if quota is not None:
            await self._decided(state, quota, state.root)
            raise quota.error()
        return decision.payload() if decision.routine else None

    async def _enforce(self, state: TurnState, decision: Decision) -> None:
        """Record a decision (unless routine); ask the person when it says ask (their answer is an `approval`
        event under it); raise when the answer, or the decision, is no."""
        assert self.policy is not None
        recorded = None if decision.routine else await self._decided(state, decision, state.root)
        if decision.effect == "ask":
            answer = await self.policy.ask(decision, state.session_id)
            parent = TraceContext(recorded.trace_id, recorded.span_id) if recorded else state.root
            req = decision.request
            await self._record(
                state,
                "approval",
                parent.child(),
                name=f"{req.action}:{req.target}",
                status="denied" if answer == "deny" else "ok",
                payload={"decision": answer, "summary": decision.reason, "rule": decision.rule.name,
                         "action": req.action, "target": req.target, "label": req.label.value},
            )  # fmt: skip
            if answer == "deny":
                raise PolicyDenied(f"Not sent: {decision.reason}, and it was not approved.", decision.error().fix)
        elif decision.denied:
            raise decision.error()

    async def _settle(self, state: TurnState, collector: CallCollector) -> None:
        """After a model call, however it ended: the tokens it used replace the quotas' estimate (a call stopped
        before reporting its usage counts its estimate plus the text it wrote)."""
        reservation, state.reservation = state.reservation, None
        if self.policy is None or reservation is None:
            return
        usage = collector.usage
        tokens = None
        if usage is not None:
            tokens = usage.input_tokens + usage.output_tokens
        elif collector.text:
            tokens = reservation.tokens + estimate_tokens(ChatMessage("assistant", collector.text))
        try:
            await self.policy.settle(reservation, tokens)
        except Exception:  # the estimate stays counted; the turn's own outcome matters more
            log.warning("could not settle a model call's quota reservation", exc_info=True)

    def _tool_decision(self, state: TurnState, prepared: PreparedCall) -> Decision | None:
        if self.policy is None:
            return None
        return self.executor.authorize(prepared, state.requester, state.label or self.policy.engine.default_label)

    def _result_label(self, prepared: PreparedCall | None, text: str, data: dict[str, Any] | None) -> str | None:
        """A tool result's label: the classifier's (its text, the file it read) or one the tool gave."""
        if self.policy is None or prepared is None:
            return None
        path = self._source_path(prepared, data or {})
        label = self.policy.result_label(text, path, (data or {}).get("label"))
        return label.value if label else None

    def _source_path(self, prepared: PreparedCall, data: dict[str, Any]) -> str | None:
        """The file a tool read, as `source` rules see it: the absolute path the tool opened (the workspace's
        file tools report it relative to the workspace), else the `path` argument as given."""
        given = data.get("path") if isinstance(data.get("path"), str) else prepared.args.get("path")
        if not isinstance(given, str) or not given:
            return None
        from core.tools.sandbox import Workspace

        try:
            return str(Workspace(self.tool_context.workspace).resolve(given))
        except Exception:  # not a workspace path (an MCP tool's own): the rules see it as written
            return given
