"""What the agent loop asks of the policy: labels of what a turn holds, whether the model may see it, quotas.

One gate per agent, for one model target. The loop owns the recording (every decision becomes a timeline
event or part of the step it gates); the gate only decides, so it stays testable without a turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.policy.engine import Decision, PolicyEngine
from core.policy.labels import Label, highest, lenient_label
from core.policy.quotas import QuotaBook
from core.policy.request import PolicyRequest, Requester
from core.tools.registry import ApprovalCallback, ApprovalDecision, ApprovalRequest, RiskTier


@dataclass(frozen=True)
class Screened:
    """Recalled memories after the policy: what stays (`recalled`, None if nothing), the labels of what
    stays, and what was withheld (each denying decision with the memory ids it kept out)."""

    recalled: Any
    labels: list[Label]
    withheld: list[tuple[Decision, list[str]]]


async def ask_person(approve: ApprovalCallback | None, decision: Decision, session_id: str) -> ApprovalDecision:
    """Put a rule's `ask` to the person through the approval callback (the tools pane, the terminal). No one to
    ask, or an answer that failed, is a denial."""
    if approve is None:
        return ApprovalDecision.DENY
    req = decision.request
    request = ApprovalRequest(
        tool=f"{req.action}:{req.target}",
        risk=RiskTier.HIGH,
        summary=decision.reason,
        arguments=decision.payload(),
        session_id=session_id,
    )
    try:
        return await approve(request)
    except Exception:
        return ApprovalDecision.DENY


class PolicyGate:
    def __init__(
        self, engine: PolicyEngine, quotas: QuotaBook | None, target: str, approve: ApprovalCallback | None = None
    ) -> None:
        self.engine = engine
        self.quotas = quotas
        self.target = target  # the model backend, as rules name it (core.policy.engine.model_target)
        self.approve = approve
        self._approved: set[tuple[str, str, str, str]] = set()  # (session, action, target, label) for the session

    # --- labels --------------------------------------------------------------------------------

    def message_label(self, text: str, explicit: Label | str | None) -> Label | None:
        """The label stored with a person's message (None: unlabelled, the default applies when read)."""
        return self.engine.stored_label(text, explicit=explicit)

    def result_label(self, text: str, source: str | None, given: object = None) -> Label | None:
        """A tool result's label: the classifier's (on its text, and on the file it read) or the tool's own."""
        found = [label for label in (self.engine.stored_label(text, source=source), lenient_label(given)) if label]
        return highest(found, Label.PUBLIC) if found else None

    def label_of(self, labels: Iterable[Label | str | None]) -> Label:
        return highest(labels, self.engine.default_label)

    def hit_label(self, hit: Any) -> Label:
        """A recalled memory's label: its own, else the classifier's (documents by path too), else the default."""
        source = hit.uri if hit.kind == "document" else None
        return self.engine.label_for(hit.text, explicit=lenient_label(getattr(hit, "label", None)), source=source)

    # --- decisions -----------------------------------------------------------------------------

    def model(self, label: Label, requester: Requester) -> Decision:
        return self.engine.decide(PolicyRequest("model", self.target, requester, label))

    def admit(self, requester: Requester) -> Decision | None:
        """A task from a peer: its per-peer rate limit (None when nothing limits it)."""
        return self.engine.limit("peer", str(requester), requester) if requester.remote else None

    def visible(self, label: Label, requester: Requester) -> Decision:
        """Whether data of `label` may enter this turn's context: the model sees it, and for a peer's task the
        peer gets the answer, so it must be allowed to see it too. Returns the first non-allowing decision."""
        decision = self.model(label, requester)
        if decision.allowed and requester.remote:
            aliases = requester.names()[1:]
            decision = self.engine.decide(PolicyRequest("peer", str(requester), requester, label, aliases=aliases))
        return decision

    def screen(self, recalled: Any, requester: Requester) -> Screened:
        """Leave out recalled memories this turn's model (or requesting peer) may not see. A memory whose
        rule would ask is left out too: nobody is asked about each memory."""
        by_label: dict[Label, Decision] = {}
        kept, labels = [], []
        withheld: dict[Label, tuple[Decision, list[str]]] = {}
        for hit in recalled.hits:
            label = self.hit_label(hit)
            decision = by_label.setdefault(label, self.visible(label, requester))
            if decision.allowed:
                kept.append(hit)
                labels.append(label)
            else:
                withheld.setdefault(label, (decision, []))[1].append(hit.source_id)
        if len(kept) == len(recalled.hits):
            return Screened(recalled, labels, [])
        from core.memory.recall_context import Recalled, render

        return Screened(Recalled(render(kept), kept) if kept else None, labels, list(withheld.values()))

    async def ask(self, decision: Decision, session_id: str) -> bool:
        """A rule says ask: put the question to the person (approve once or for the session). No one to ask
        means no."""
        req = decision.request
        key = (session_id, req.action, req.target, req.label.value)
        if key in self._approved:
            return True
        answer = await ask_person(self.approve, decision, session_id)
        if answer is ApprovalDecision.APPROVE_SESSION:
            self._approved.add(key)
        return answer is not ApprovalDecision.DENY

    # --- quotas --------------------------------------------------------------------------------

    def _accounts(self, requester: Requester) -> list[tuple[str, str, tuple[str, ...]]]:
        accounts: list[tuple[str, str, tuple[str, ...]]] = [("provider", self.target, (self.target,))]
        if requester.remote:  # tokens spent on a peer's tasks count against that peer too
            accounts.append(("peer", requester.key, requester.names()))
        return accounts

    async def quota_denial(self, label: Label, requester: Requester) -> Decision | None:
        """A deny decision naming the used-up quota (its error says when it resets), or None."""
        if self.quotas is None:
            return None
        for scope, key, names in self._accounts(requester):
            found = await self.quotas.over(scope, key, names)
            if found is not None:
                ref, error = found
                request = PolicyRequest("model", self.target, requester, label)
                return Decision(request, "deny", ref, error.message.rstrip("."), failure=error)
        return None

    async def record_usage(self, requester: Requester, tokens: int) -> None:
        if self.quotas is None or tokens <= 0:
            return
        for scope, key, names in self._accounts(requester):
            await self.quotas.record(scope, key, names, tokens)
