"""The policy's steps in a turn (mixed into `Agent`): admitting a peer's task, screening recalled memories,
checking each model call (labels, rules, quotas) and each tool call, and recording every decision.

A decision by a built-in default that restates what Shoal always did for local use (the local model sees
everything, a low-risk tool runs, a high-risk one asks) is recorded inside the step it gates (`policy` in the
`llm.request` / `tool.call` payload), so a local turn's timeline keeps its shape; every other decision (a
rule of yours, anything remote, any denial) is a `policy.decision` event of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from core.errors import PolicyDenied
from core.policy.engine import Decision
from core.policy.gate import PolicyGate
from core.policy.labels import Label, parse_label
from core.policy.request import LOCAL, Requester
from core.timeline.ids import TraceContext
from core.timeline.store import Event

if TYPE_CHECKING:
    from core.agent.loop import TurnState
    from core.tools.executor import PreparedCall, ToolExecutor


def who_payload(label: Label | None, requester: Requester) -> dict[str, str]:
    """The user.message payload's policy part: the label it was stored with, who asked (when not local)."""
    return {
        **({"label": label.value} if label else {}),
        **({"requester": str(requester)} if requester != LOCAL else {}),
    }


class PolicySteps:
    policy: PolicyGate | None
    executor: ToolExecutor
    _record: Callable[..., Awaitable[Event]]

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

    async def _admit(self, state: TurnState) -> None:
        """A task from a peer counts against that peer's rate limits before anything runs."""
        if self.policy is None:
            return
        decision = self.policy.admit(state.requester)
        if decision is not None and not decision.allowed:
            await self._decided(state, decision, state.root)
            raise decision.error()

    async def _screen(self, state: TurnState, recalled: Any) -> Any:
        """Recalled memories the model (or the requesting peer) may not see are left out, and that is recorded."""
        if self.policy is None:
            return recalled
        screened = self.policy.screen(recalled, state.requester)
        for decision, memory_ids in screened.withheld:
            await self._decided(state, decision, state.root, memory_ids=memory_ids, withheld=True)
        state.memory_labels = screened.labels
        return screened.recalled

    async def _check_model(self, state: TurnState, labels: list[str | None]) -> dict[str, Any] | None:
        """Decide whether what is about to be sent (these messages and the recalled memories) may go to the
        model, then the quotas. Raises PolicyDenied or QuotaExceeded; returns a routine decision's payload for
        the `llm.request` event (None when it was recorded on its own, or without a policy)."""
        if self.policy is None:
            return None
        state.label = self.policy.label_of([*labels, *state.memory_labels])
        decision = self.policy.model(state.label, state.requester)
        if not decision.routine:
            await self._decided(state, decision, state.root)
        if decision.effect == "ask" and not await self.policy.ask(decision, state.session_id):
            raise PolicyDenied(f"Not sent: {decision.reason}, and it was not approved.", decision.error().fix)
        if decision.denied:
            raise decision.error()
        quota = await self.policy.quota_denial(state.label, state.requester)
        if quota is not None:
            await self._decided(state, quota, state.root)
            raise quota.error()
        return decision.payload() if decision.routine else None

    def _tool_decision(self, state: TurnState, prepared: PreparedCall) -> Decision | None:
        if self.policy is None:
            return None
        return self.executor.authorize(prepared, state.requester, state.label or self.policy.engine.default_label)

    def _result_label(self, prepared: PreparedCall | None, text: str, data: dict[str, Any] | None) -> str | None:
        """A tool result's label: the classifier's (its text, the file it read) or one the tool gave."""
        if self.policy is None or prepared is None:
            return None
        path = prepared.args.get("path")
        label = self.policy.result_label(text, path if isinstance(path, str) else None, (data or {}).get("label"))
        return label.value if label else None
