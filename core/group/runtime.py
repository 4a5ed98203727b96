"""Group mode as one component the agent core owns: node + dispatcher + worker + the agent's peer tools.

The skill handler `agent` runs a turn of the local agent in a session of its own ("Task from …"), inside
the requester's trace: the request's receipt is the turn's parent span, so one trace id covers the whole
decision on both machines.

The policy (core/policy/) is asked before anything leaves: a task for a peer (action `peer`, target the agent's
name or `skill:<skill>`) and a memory item for the zone (action `zone`), each at its label; a task taken from
a peer runs as that peer's request (`peer:<name>`), at the label the request carries, and its result carries
the label of the answer; the answer to a task sent is labelled at least as the task was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from core import events as ev
from core.errors import ToolError, UserError
from core.group import session_cache
from core.group.dispatch import Dispatcher, TaskHandle
from core.group.envelope import Envelope
from core.group.identity import Identity, load_or_create
from core.group.node import GroupNode
from core.group.reports import Reports
from core.group.roster import Member
from core.group.shared_memory import SharedMemory, ShareMemoryTool, lenient
from core.group.worker import SkillCall, Worker, echo_runner
from core.policy.labels import lenient_label
from core.policy.request import LOCAL, PolicyRequest, Requester
from core.policy.service import peer_requester
from core.settings import GroupSettings
from core.tools.registry import (
    ApprovalDecision,
    ApprovalRequest,
    RiskTier,
    Tool,
    ToolContext,
    ToolOutput,
    ToolSpec,
    deny_all,
)

if TYPE_CHECKING:
    from core.service import AgentCore

log = logging.getLogger(__name__)
TOOL_SOURCE = "group"


class GroupRuntime:
    def __init__(
        self,
        core: AgentCore,
        settings: GroupSettings,
        *,
        ephemeral: bool = False,
        identity: Identity | None = None,
        reuse_session: bool = False,
        session_needed: float = 0.0,
    ) -> None:
        """`reuse_session`: a command that sends, in a closed group, reuses this machine's kept session (one
        admission an hour instead of one a command: core/group/session_cache.py) when it outlasts
        `session_needed` seconds (a task's deadline) by a margin."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            shoal_version = f"shoal {version('shoal')}"
        except PackageNotFoundError:
            shoal_version = "shoal"
        self.core = core
        self.node = GroupNode(
            settings,
            core.db,
            core.timeline,
            ephemeral=ephemeral,
            identity=identity,
            model_id=_model_id(core),
            version=shoal_version,
            identity_scope=str(core.settings.paths.data_path()),
        )
        self.sessions = (
            session_cache.SessionKeeper(self.node.group_name, self.node.identity_scope, session_needed)
            if reuse_session and ephemeral and identity is None
            else None
        )
        self.dispatcher = Dispatcher(self.node)
        if core.approve is not deny_all:  # someone is there to answer "let X join?" (desktop, shoal serve)
            self.node.onboarding.approver = self._approve_join
        self.worker = Worker(self.node, {"echo": echo_runner, "agent": self._agent_runner})
        self.reports = Reports(self.node, self.worker, self._may_report)  # reporting up to a parent
        self.shared: SharedMemory | None = None
        if core.memory is not None:  # items peers share are indexed in this agent's own memory
            self.shared = SharedMemory(self.node, core.memory)
            self.shared.authorize = self._authorize_share
            self.shared.attach()

    async def start(self) -> None:
        if self.sessions is not None:
            self.node.session = await self.sessions.take()
        await self.node.start()
        if not self.node.ephemeral:
            self.core.registry.register(DelegateTool(self))
            self.core.registry.register(AskPeerTool(self))
            if self.shared is not None:
                self.core.registry.register(ShareMemoryTool(self.shared))

    async def admit_session(self, timeout: float) -> None:
        """A command-line session in a closed group, admitted for an hour by this machine's membership."""
        node = self.node
        if not node.membership.enforced or not node.ephemeral or node.parent_identity is not None:
            return
        parent = await asyncio.to_thread(load_or_create, node.group_name, node.identity_scope)
        if parent.agent_id == node.agent_id:
            return  # the machine's own identity (shoal group join / create)
        if node.membership.status(parent.agent_id) != "admitted":
            raise UserError(
                f"This machine is not a member of group {node.group_name!r} "
                f"({node.membership.status(parent.agent_id)}).",
                "Join first with the invite code: shoal group join <code>",
            )
        node.parent_identity = parent
        if node.session is not None and await self._reused(node):
            await node.announce()
            return
        await node.onboarding.admit_session(parent, timeout)
        await node.announce()  # its card now counts: peers (and `shoal replay`) learn its key at once
        admission = node.membership.admitted.get(node.agent_id)
        if self.sessions is not None and admission is not None and node.identity and node.box_key:
            await self.sessions.keep(node.identity, node.box_key, admission.expires_at)

    async def _reused(self, node: GroupNode) -> bool:
        """The kept session is still admitted (as the control topic says): nothing to admit. One the group
        refuses (removed, or its record gone) is forgotten, and the command asked to run again."""
        status = node.membership.status(node.agent_id)
        if status == "admitted":
            return True
        assert self.sessions is not None
        await self.sessions.refused()
        if status == "unknown":  # no record of it (a group made anew under the same name): admit it now
            return False
        raise UserError(
            f"This machine's command session in group {node.group_name!r} is {status}.",
            "Run the command again: it starts a new session.",
        )

    async def _approve_join(self, request: dict[str, Any]) -> bool:
        """Manual approval (group.join_approval = manual) through the app's approval prompt."""
        summary = f"Let {request['name']} ({request['agentid'][:12]}) join group {request['group']}?"
        ask = ApprovalRequest(tool="group.join", risk=RiskTier.HIGH, summary=summary, arguments=request, session_id="")
        return await self.core.approve(ask) != ApprovalDecision.DENY

    async def stop(self, timeout: float = 5.0) -> None:
        await self.worker.close(timeout)
        await self.dispatcher.close()
        await self.node.stop(timeout)
        if self.sessions is not None:
            self.sessions.release()  # after the leave: the next command may take the session
        self.core.registry.unregister_source(TOOL_SOURCE)

    def members(self) -> list[Member]:
        return self.node.members()

    async def dispatch(
        self,
        text: str,
        *,
        label: str | None = None,
        floor: str | None = None,
        requester: Requester | None = None,
        **kwargs: Any,
    ) -> TaskHandle:
        """Send a task (see `Dispatcher.dispatch`) once the policy lets its label go to the peer: `label` is the
        person's word for it, `floor` the label of the turn it comes from (the classifier may raise either)."""
        policy = self.core.policy
        carried = policy.outgoing_label(text, explicit=label, floor=floor)
        if kwargs.get("to_children") and not kwargs.get("to"):  # the policy decides on the child picked
            kwargs["to"] = self.dispatcher.pick_child(str(kwargs.get("skill") or "")).agentid
        member = self.node.roster.find(kwargs["to"]) if kwargs.get("to") else None
        target = member.name if member else (kwargs.get("to") or f"skill:{kwargs.get('skill', '')}")
        aliases = (member.agentid,) if member else ()
        request = PolicyRequest("peer", target, requester or LOCAL, carried, aliases=aliases)
        await policy.authorize(
            request,
            approve=self.core.approve,
            session_id=kwargs.get("session_id", ""),
            trace=kwargs.get("parent"),
            correlation_id=kwargs.get("correlationid", ""),
            audit=self.node.publish_steps,
        )
        return await self.dispatcher.dispatch(text, label=carried.value, **kwargs)

    def _may_report(self, parent: Member, output: str, labels: list[str], request: Envelope) -> str | None:
        """The label a report's summary goes to the parent with, or None when the policy would not let the
        answer go to that peer without asking (a report never asks anyone: it goes without the summary)."""
        found = [label for label in map(lenient_label, labels) if label]
        floor = max(found, key=lambda label: label.rank).value if found else None
        carried = self.core.policy.outgoing_label(output, floor=floor)
        member = self.node.roster.get(request.agentid)
        asker = peer_requester(request.agentid, member.name if member else "")
        decision = self.core.policy.engine.decide(
            PolicyRequest("peer", parent.name, asker, carried, aliases=(parent.agentid,))
        )
        return carried.value if decision.allowed else None

    async def _authorize_share(
        self, text: str, label: str | None, floor: str | None, fallback: str | None, context: dict[str, Any]
    ) -> str:
        policy = self.core.policy
        carried = policy.outgoing_label(text, explicit=label, floor=floor, fallback=fallback)
        await policy.authorize(
            PolicyRequest("zone", self.node.settings.zone, context.get("requester") or LOCAL, carried),
            approve=self.core.approve,
            session_id=context.get("session_id") or "",
            trace=context.get("parent"),
            correlation_id=context.get("correlation_id") or "",
            audit=self.node.publish_steps,
        )
        return carried.value

    async def _agent_runner(self, call: SkillCall) -> AsyncIterator[str]:
        """Answer a task with a turn of the local agent, streaming its text, as the requesting peer's request.
        The peer's rate limit applies before anything is made for it; the answer carries the turn's label."""
        member = self.node.roster.get(call.sender) if call.sender else None
        name = member.name if member else str(call.requester.get("name") or "")
        who = peer_requester(call.sender or str(call.requester.get("agentid") or ""), name[:100])
        await self.core.policy.admit(
            who, trace=call.parent, correlation_id=call.correlationid, audit=self.node.publish_steps
        )
        requester = str(call.requester.get("name") or call.requester.get("agentid", "a peer"))[:40]
        session = await self.core.new_session(f"Task from {requester}: {call.input[:60]}")
        call.session_id = session.id
        turn = self.core.send(
            session.id,
            call.input,
            parent=call.parent,
            correlation_id=call.correlationid,
            depth=call.depth + 1,
            label=lenient(call.label),
            requester=who,
            admitted=True,
        )
        failure: ToolError | None = None
        step = 0
        async for event in turn:
            if isinstance(event, ev.AssistantDelta):
                yield event.text
            elif isinstance(event, ev.LlmCallStarted | ev.ToolCallStarted):
                step = _report_step(call, event, step, self.core.settings.agent.max_iterations)
            elif isinstance(event, ev.TurnFinished):
                call.usage = {"inputtokens": event.input_tokens, "outputtokens": event.output_tokens}
                if event.status == "cancelled":
                    failure = ToolError("The task's turn was cancelled.", "")
            elif isinstance(event, ev.TurnFailed):
                failure = ToolError(str(event.error.get("message", "the turn failed")), str(event.error.get("fix", "")))
        call.result_label = await self._answer_label(session.id)
        if failure is not None:
            raise failure

    async def _answer_label(self, session_id: str) -> str:
        """The label the turn stored with its last answer ("" when unlabelled: only the default, or no policy)."""
        labelled = await self.core.sessions.labelled_messages(session_id)
        answers = [label for message, label in labelled if message.role == "assistant"]
        return (answers[-1] or "") if answers else ""


def _report_step(call: SkillCall, event: ev.LlmCallStarted | ev.ToolCallStarted, step: int, most: int) -> int:
    """`step n of m` for a task's agent turn: step n is the turn's n-th model call (a tool call belongs to the
    step whose model call asked for it), m the turn's ceiling of model calls, agent.max_iterations. A turn that
    answers sooner ends before step m: its result, not step m, marks the end (docs/coordination.md)."""
    if isinstance(event, ev.LlmCallStarted):
        call.step(event.iteration, most, "thinking" if event.iteration == 1 else "thinking over the tools' results")
        return event.iteration
    call.step(step or 1, most, f"running {event.name}")
    return step


def _model_id(core: AgentCore) -> str:
    model = core.settings.model
    if model.provider == "openai":
        return model.name
    from pathlib import Path

    return Path(model.path).stem if model.path else ""


class _PeerTool(Tool):
    """Shared by `delegate` and `ask_peer`: send a task, wait for its result, hand the text to the model."""

    def __init__(self, runtime: GroupRuntime) -> None:
        self.runtime = runtime

    async def _ask(self, args: dict[str, Any], ctx: ToolContext, **target: Any) -> ToolOutput:
        deadline = args.get("deadline_seconds")
        handle = await self.runtime.dispatch(
            str(args.get("task", "")),
            floor=ctx.label or None,
            requester=ctx.requester,
            parent=ctx.trace,
            correlationid=ctx.correlation_id,
            depth=ctx.depth,
            session_id=ctx.session_id,
            deadline=float(deadline) if deadline else None,
            **target,
        )
        result = await handle.result()
        who = result.agent.get("name") or result.agent.get("agentid", "")
        data = {"taskid": handle.taskid, "status": result.status, "agent": result.agent, "usage": result.usage}
        # the answer is at least as sensitive as the task it answers, and as what the peer says it is
        found = [label for label in (lenient_label(result.label), lenient_label(handle.label)) if label]
        if found:
            data["label"] = max(found, key=lambda label: label.rank).value
        if not result.ok:
            raise ToolError(
                f"The group task failed ({result.status}): {result.error.get('message', '')}",
                "Try another skill or agent, or do it yourself.",
            )
        return ToolOutput(f"[answer from {who}]\n{result.output}", data)


class DelegateTool(_PeerTool):
    spec = ToolSpec(
        name="delegate",
        description="Hand a task to whichever group member offers a skill, and get its answer. Use the roster's "
        "skill names. target \"children\" delegates to one of this agent's own children in the group's hierarchy.",
        parameters={
            "type": "object",
            "properties": {
                "skill": {"type": "string", "description": "skill name, e.g. coder"},
                "target": {
                    "type": "string",
                    "enum": ["any", "children"],
                    "description": "any member offering the skill (default), or only this agent's children",
                },
                "task": {"type": "string", "description": "the complete task, self-contained"},
                "deadline_seconds": {"type": "number", "minimum": 1, "maximum": 3600},
            },
            "required": ["skill", "task"],
            "additionalProperties": False,
        },
        risk=RiskTier.WRITE,
        source=TOOL_SOURCE,
    )

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        children = args.get("target") == "children"  # delegate_to_child
        return await self._ask(args, ctx, skill=str(args["skill"]), **({"to_children": True} if children else {}))


class AskPeerTool(_PeerTool):
    spec = ToolSpec(
        name="ask_peer",
        description="Ask one named group member a question or give it a task, and get its answer.",
        parameters={
            "type": "object",
            "properties": {
                "agent": {"type": "string", "description": "the member's name or agent id"},
                "task": {"type": "string", "description": "the complete question or task"},
                "deadline_seconds": {"type": "number", "minimum": 1, "maximum": 3600},
            },
            "required": ["agent", "task"],
            "additionalProperties": False,
        },
        risk=RiskTier.WRITE,
        source=TOOL_SOURCE,
    )

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return await self._ask(args, ctx, to=str(args["agent"]))
