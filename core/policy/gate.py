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
from core.policy.quotas import QuotaBook, Reservation
from core.policy.request import PolicyRequest, Requester
from core.tools.registry import ApprovalCallback, ApprovalDecision, ApprovalRequest, RiskTier


@dataclass(frozen=True)
class Screened:
    """Recalled memories after the policy: what stays (`recalled`, None if nothing), the labels of what
    stays (None: unlabelled, the default applies), and what was withheld (each denying decision with the memory
    ids it kept out)."""

    recalled: Any
    labels: list[Label | None]
    withheld: list[tuple[Decision, list[str]]]


def peer_request(label: Label, requester: Requester) -> PolicyRequest:
    """Data of `label` going to the peer that asked (its task's answer): named as `delegate` and `shoal
    dispatch` name a peer, by its name with its agent id as an alias."""
    target = requester.name or requester.agent_id or "unknown"
    aliases = (requester.agent_id,) if requester.agent_id and requester.agent_id != target else ()
    return PolicyRequest("peer", target, requester, label, aliases=aliases)


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

    def known(self, labels: Iterable[Label | None]) -> Label | None:
        """The label to store with something made from data of these labels (None: unlabelled): their highest,
        unless only the default makes it that high, or the policy is off (a later classify rule, or another
        default, then still applies to it)."""
        labels = list(labels)
        found = [label for label in labels if label is not None]
        if not found or not self.engine.enabled:
            return None
        top = max(found, key=lambda label: label.rank)
        return None if None in labels and top < self.engine.default_label else top

    def message_labels(self, labelled: Iterable[tuple[Any, str | None]]) -> list[Label | None]:
        """The labels of stored messages as they stand now: a person's message keeps the label it was stored with
        (the person's word is never lowered); anything else may be raised by the classifier; an unlabelled
        message (stored before a rule existed, or seeded by a client) gets the classifier's (None: the default)."""
        out: list[Label | None] = []
        for message, stored in labelled:
            own = lenient_label(stored)
            if own is not None and message.role == "user":
                out.append(own)
                continue
            found = [x for x in (own, self.engine.stored_label(message.content or "")) if x is not None]
            out.append(max(found, key=lambda label: label.rank) if found else None)
        return out

    def hit_known(self, hit: Any) -> Label | None:
        """A recalled memory's label (None: unlabelled). A note keeps the label it was saved with (yours, or the
        turn's); for a document or a shared item the classifier runs on its text and its path or uri, and may
        only raise the label it carries (a peer's `public` never beats this agent's own rules)."""
        own = lenient_label(getattr(hit, "label", None))
        if own is not None and hit.kind == "note":
            return own
        source = hit.uri if hit.kind in ("document", "shared") else None
        found = [x for x in (own, self.engine.stored_label(hit.text, source=source)) if x is not None]
        return max(found, key=lambda label: label.rank) if found else None

    def hit_label(self, hit: Any) -> Label:
        """A recalled memory's effective label: `hit_known`, else the default."""
        return self.hit_known(hit) or self.engine.default_label

    # --- decisions -----------------------------------------------------------------------------

    def model(self, label: Label, requester: Requester) -> Decision:
        return self.engine.decide(PolicyRequest("model", self.target, requester, label))

    def peer(self, label: Label, requester: Requester) -> Decision:
        """Whether data of `label` may go to the peer whose task this is (it gets the answer)."""
        return self.engine.decide(peer_request(label, requester))

    def admit(self, requester: Requester) -> Decision | None:
        """A task from a peer: its per-peer rate limit (None when nothing limits it)."""
        return self.engine.limit("peer", str(requester), requester) if requester.remote else None

    def visible(self, label: Label, requester: Requester) -> Decision:
        """Whether data of `label` may enter this turn's context: the model sees it, and for a peer's task the
        peer gets the answer, so it must be allowed to see it too. Returns the first non-allowing decision."""
        decision = self.model(label, requester)
        if decision.allowed and requester.remote:
            decision = self.peer(label, requester)
        return decision

    def screen_hits(
        self, hits: list[Any], requester: Requester
    ) -> tuple[list[Any], list[Label | None], list[tuple[Decision, list[str]]]]:
        """Recalled memories the turn's model (or requesting peer) may see, their labels (None: unlabelled), and
        what was withheld (each denying decision with the memory ids). A memory whose rule would ask is left out
        too: nobody is asked about each memory."""
        by_label: dict[Label, Decision] = {}
        kept: list[Any] = []
        labels: list[Label | None] = []
        withheld: dict[Label, tuple[Decision, list[str]]] = {}
        for hit in hits:
            known = self.hit_known(hit)
            label = known or self.engine.default_label
            decision = by_label.setdefault(label, self.visible(label, requester))
            if decision.allowed:
                kept.append(hit)
                labels.append(known)
            else:
                withheld.setdefault(label, (decision, []))[1].append(hit.source_id)
        return kept, labels, list(withheld.values())

    def screen(self, recalled: Any, requester: Requester) -> Screened:
        """Leave out recalled memories this turn's model (or requesting peer) may not see."""
        kept, labels, withheld = self.screen_hits(recalled.hits, requester)
        if len(kept) == len(recalled.hits):
            return Screened(recalled, labels, [])
        from core.memory.recall_context import Recalled, render

        return Screened(Recalled(render(kept), kept) if kept else None, labels, withheld)

    async def ask(self, decision: Decision, session_id: str) -> str:
        """A rule says ask: put the question to the person (approve once or for the session). No one to ask
        means no. Returns the answer as an approval records it: `approve_once`, `approve_session`, `session`
        (approved earlier for the session) or `deny`."""
        req = decision.request
        key = (session_id, req.action, req.target, req.label.value)
        if key in self._approved:
            return "session"
        answer = await ask_person(self.approve, decision, session_id)
        if answer is ApprovalDecision.APPROVE_SESSION:
            self._approved.add(key)
        return answer.value

    # --- quotas --------------------------------------------------------------------------------

    def _accounts(self, requester: Requester) -> list[tuple[str, str, tuple[str, ...]]]:
        accounts: list[tuple[str, str, tuple[str, ...]]] = [("provider", self.target, (self.target,))]
        if requester.remote:  # tokens spent on a peer's tasks count against that peer too
            accounts.append(("peer", requester.key, requester.names()))
        return accounts

    async def reserve(
        self, label: Label, requester: Requester, tokens: int
    ) -> tuple[Decision | None, Reservation | None]:
        """Check the quotas and book `tokens` (the call's estimated input) against them in one transaction, so
        turns running at once cannot all pass on the same allowance. Returns a deny decision naming the used-up
        quota (its error says when it resets), or the reservation to settle after the call."""
        if self.quotas is None:
            return None, None
        reservation, over = await self.quotas.reserve(self._accounts(requester), tokens)
        if over is not None:
            ref, error = over
            request = PolicyRequest("model", self.target, requester, label)
            return Decision(request, "deny", ref, error.message.rstrip("."), failure=error), None
        return None, reservation

    async def settle(self, reservation: Reservation | None, tokens: int | None) -> None:
        """After the call: the tokens it really used replace the estimate (None: the estimate stands)."""
        if self.quotas is not None and reservation is not None:
            await self.quotas.settle(reservation, tokens)
