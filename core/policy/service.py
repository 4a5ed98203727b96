"""The policy of one `AgentCore`: its engine (the rules in force), the quota book, and deciding on what leaves
for the group (a task to a peer, a memory item to a zone) outside a model call.

`load` reads the file when the core starts (a bad file is a ConfigError naming the line, raised like any
other configuration error) and again when the settings change. Decisions the group cares about are recorded
as `policy.decision` timeline events and handed to the group's audit trail.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.errors import PolicyDenied
from core.policy.engine import Decision, PolicyEngine
from core.policy.gate import PolicyGate, ask_person
from core.policy.labels import Label, highest, lenient_label, parse_label
from core.policy.loader import load_policy
from core.policy.quotas import QuotaBook
from core.policy.request import PolicyRequest, Requester, model_target
from core.settings import ModelSettings, Settings
from core.timeline.db import Database
from core.timeline.ids import TraceContext, new_id
from core.timeline.store import Event, Timeline
from core.tools.registry import ApprovalCallback, ApprovalDecision

log = logging.getLogger(__name__)
Audit = Callable[[list[Event]], Awaitable[None]]


def provider_target(provider: Any, model: ModelSettings) -> str:
    """The model backend as rules name it: the provider's own endpoint when it has one, else the settings'
    (a provider handed in, as tests do, is taken to be the configured one)."""
    name = getattr(provider, "name", "")
    base_url = getattr(provider, "base_url", None)
    if name == "openai" and isinstance(base_url, str):
        return model_target("openai", base_url)
    if name == "llama_cpp":
        return "llama_cpp"
    return model_target(model.provider, model.base_url)


class Policy:
    def __init__(self, db: Database, timeline: Timeline, *, config_file: Path | None = None) -> None:
        self.db = db
        self.timeline = timeline
        self.config_file = config_file  # policy.toml lives beside it unless policy.file says otherwise
        self.engine = PolicyEngine.from_policy(_empty())
        self.quotas = QuotaBook(db, self.engine)

    def load(self, settings: Settings) -> None:
        """Read the rules for `settings`; raises ConfigError (naming the file and line) and keeps the rules in
        force when the file is bad."""
        engine = load_policy(settings, config_file=self.config_file)
        self.engine, self.quotas = engine, QuotaBook(self.db, engine)

    def gate(self, provider: Any, model: ModelSettings, approve: ApprovalCallback | None) -> PolicyGate:
        return PolicyGate(self.engine, self.quotas, provider_target(provider, model), approve)

    def outgoing_label(
        self, text: str, *, explicit: Label | str | None = None, floor: str | None = None, fallback: str | None = None
    ) -> Label:
        """The label of text about to leave: the person's word if given; else the highest of the classifier's and
        `floor` (the label of the turn it comes from); else `fallback` (default: policy.default_label)."""
        if explicit:
            return parse_label(explicit)
        found = [label for label in (self.engine.stored_label(text), lenient_label(floor)) if label]
        if found:
            return highest(found, self.engine.default_label)
        return parse_label(fallback or self.engine.default_label)

    async def authorize(
        self,
        request: PolicyRequest,
        *,
        approve: ApprovalCallback | None,
        session_id: str = "",
        trace: TraceContext | None = None,
        correlation_id: str = "",
        audit: Audit | None = None,
    ) -> Decision:
        """Decide, record the decision (a timeline event, and the group's audit trail via `audit`), ask the
        person when a rule says ask (their answer is an `approval` event under the decision); raise PolicyDenied
        when the answer is no."""
        decision = self.engine.decide(request)
        correlation_id = correlation_id or new_id()
        where = trace.child() if trace else TraceContext.new_root()
        if not decision.routine:
            event = await self.timeline.record(
                "policy.decision", session_id=session_id, trace=where, correlation_id=correlation_id,
                **decision.event_fields(),
            )  # fmt: skip
            await _audit(audit, event)
        if decision.effect == "ask":
            answer = await ask_person(approve, decision, session_id)
            await _audit(audit, await self.timeline.record(
                "approval", session_id=session_id, trace=where.child(), correlation_id=correlation_id,
                name=f"{request.action}:{request.target}", status="denied" if answer is ApprovalDecision.DENY else "ok",
                payload={"decision": answer.value, "summary": decision.reason, "rule": decision.rule.name,
                         "action": request.action, "target": request.target, "label": request.label.value},
            ))  # fmt: skip
            if answer is ApprovalDecision.DENY:
                raise PolicyDenied(f"Not done: {decision.reason}, and it was not approved.", decision.error().fix)
        elif decision.denied:
            raise decision.error()
        return decision

    async def admit(
        self, requester: Requester, *, trace: TraceContext | None = None, correlation_id: str = "",
        audit: Audit | None = None,
    ) -> None:  # fmt: skip
        """A task from a peer, before anything is made for it (a session, a turn): its per-peer rate limit. A
        refusal is recorded (and audited) and raised (RateLimitExceeded, saying when to retry)."""
        decision = self.engine.limit("peer", str(requester), requester) if requester.remote else None
        if decision is None or decision.allowed:
            return
        event = await self.timeline.record(
            "policy.decision", session_id="", trace=trace.child() if trace else TraceContext.new_root(),
            correlation_id=correlation_id or new_id(), **decision.event_fields(),
        )  # fmt: skip
        await _audit(audit, event)
        raise decision.error()


async def _audit(audit: Audit | None, event: Event) -> None:
    if audit is None:
        return
    try:
        await audit([event])
    except Exception:  # the decision stands and is on disk; the trail catches up with the outbox
        log.warning("could not add a policy decision to the audit trail", exc_info=True)


def peer_requester(agent_id: str, name: str) -> Requester:
    """A peer as the policy sees it: rules match `peer:<name>` and `peer:<agent id>`."""
    return Requester("peer", name, agent_id)


def _empty() -> Any:
    from core.policy.schema import PolicyFile

    return PolicyFile()
