"""`shoal replay --refeed`: run replayed task requests again through a scratch agent, to reproduce a decision.

The scratch agent is a whole `AgentCore` over a temporary data folder (the front end builds it through
app/wiring.py, with `scratch_settings`): the user's history, memory and schedule stay untouched, and it is not
in the group (nothing is sent to the live members; `delegate` and `ask_peer` do not exist for it, so a
delegation shows up as a failed tool call: replay the sub-task's own correlation id to see it).

Side effects are the risk of running a past task again, so the scratch agent:
- works in an empty temporary workspace (write-tier tools change only that), unless the caller names one;
- has every approval answered *deny* (high-risk tools such as `shell` and `web_fetch` never run; the denial is
  one of the listed steps), and `tools.auto_approve` is cleared so nothing skips that question;
- starts no MCP servers (their tools may reach anything) and no memory (an empty one would recall nothing,
  and loading an embedding model costs seconds).
It keeps the user's model settings, agent settings (system prompt, iterations), disabled tools and policy rules,
and runs each task as the original peer's request (same requester, label and depth), as the taker did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import events as ev
from core.group.envelope import TASK_REQUEST, TASK_RESULT
from core.group.replay import VERIFIED, ReplayEntry, replay
from core.group.replay_query import ReplayQuery
from core.settings import GroupSettings, Settings

OUTPUT_CHARS = 300


def scratch_settings(
    settings: Settings, folder: Path, *, workspace: Path | None = None, model_path: str | None = None
) -> Settings:
    """The user's settings, made safe to run past tasks with (see the module docstring)."""
    scratch = settings.model_copy(deep=True)
    scratch.paths.data_dir = str(folder / "data")
    scratch.tools.workspace = str(workspace or folder / "workspace")
    scratch.tools.auto_approve = []
    scratch.group.enabled = False
    scratch.memory.enabled = False
    scratch.schedule.enabled = False
    scratch.mcp_servers = []
    if model_path:
        scratch.model.provider = "llama_cpp"
        scratch.model.path = model_path
    return scratch


@dataclass
class Reproduction:
    """One task run again: the request, the original result (if one was found), the scratch agent's answer."""

    request: ReplayEntry
    original: ReplayEntry | None
    answer: str = ""
    status: str = ""  # the scratch turn's: ok | max_iterations | cancelled | failed | skipped
    error: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)  # tool calls: tool, arguments, approval, ok, output

    @property
    def taskid(self) -> str:
        return str(self.request.data.get("taskid") or self.request.attr("id"))

    @property
    def input(self) -> str:
        return str(self.request.data.get("input") or "")

    @property
    def original_status(self) -> str:
        return str(self.original.data.get("status") or "") if self.original else ""

    @property
    def original_output(self) -> str:
        return str(self.original.data.get("output") or "") if self.original else ""

    @property
    def same(self) -> bool | None:
        """Whether the scratch agent gave the original answer (None: no original to compare with)."""
        if self.original is None:
            return None
        return (
            self.status == "ok" and self.original_status == "ok" and self.answer.strip() == self.original_output.strip()
        )

    def to_json(self) -> dict[str, Any]:
        original = self.original
        return {
            "taskid": self.taskid,
            "input": self.input,
            "request": {"offset": self.request.offset, "partition": self.request.partition,
                        "status": self.request.status, "sender": self.request.sender},
            "original": None if original is None else {
                "status": self.original_status, "output": self.original_output, "verified": original.verified,
                "agent": original.data.get("agent"), "offset": original.offset,
            },
            "reproduced": {"status": self.status, "output": self.answer, "error": self.error, "steps": self.steps},
            "same": self.same,
        }  # fmt: skip


def task_requests(entries: list[ReplayEntry]) -> list[ReplayEntry]:
    """The readable task requests of a replayed sequence (unverified ones included: the listing says which)."""
    return [e for e in entries if e.type == TASK_REQUEST and e.envelope.get("signature")]


async def original_results(
    settings: GroupSettings, taskids: set[str], *, timeout: float = 30.0
) -> dict[str, ReplayEntry]:
    """The first result of each task on the responses topic (the one its requester took), a verified one first."""
    if not taskids:
        return {}
    result = await replay(settings, ReplayQuery("responses", types=(TASK_RESULT,)), timeout=timeout)
    found: dict[str, ReplayEntry] = {}
    for entry in result.entries:
        taskid = str(entry.data.get("taskid") or "")
        if taskid in taskids and (taskid not in found or (entry.verified and not found[taskid].verified)):
            found[taskid] = entry
    return found


async def refeed(
    core: Any, requests: list[ReplayEntry], originals: dict[str, ReplayEntry]
) -> AsyncIterator[Reproduction]:
    """Run each request's input as a turn of `core` (a scratch AgentCore), one after the other, yielding each
    reproduction when its turn ends."""
    for request in requests:
        repro = Reproduction(request, originals.get(str(request.data.get("taskid") or "")))
        if "data" not in request.envelope:
            repro.status, repro.error = "skipped", "the request's payload travels by reference; it was not fetched"
        else:
            await _run(core, repro)
        yield repro


async def _run(core: Any, repro: Reproduction) -> None:
    from core.group.shared_memory import lenient
    from core.policy.service import peer_requester
    from core.timeline.ids import TraceContext

    request, data = repro.request, repro.request.data
    session = await core.new_session(f"Replay of task {repro.taskid[:12]}: {repro.input[:50]}")
    depth = data["depth"] if isinstance(data.get("depth"), int) else 0
    turn = core.send(
        session.id,
        repro.input,
        parent=TraceContext.new_root(),  # a task from a peer, as the taker ran it (in a trace of its own)
        correlation_id=request.attr("correlationid"),
        depth=depth + 1,
        label=lenient(data.get("label")),
        requester=peer_requester(request.attr("agentid"), request.sender or request.attr("agentid")[:8]),
        admitted=True,
    )
    steps: dict[str, dict[str, Any]] = {}
    async for event in turn:
        _step(event, steps, repro)
    repro.steps = list(steps.values())


def _step(event: Any, steps: dict[str, dict[str, Any]], repro: Reproduction) -> None:
    if isinstance(event, ev.ToolCallStarted):
        steps[event.call_id] = {"tool": event.name, "arguments": event.arguments, "risk": event.risk}
    elif isinstance(event, ev.ApprovalResolved) and event.call_id in steps:
        steps[event.call_id]["approval"] = event.decision
    elif isinstance(event, ev.ToolCallFinished):  # also a call that never started (unknown tool, bad arguments)
        steps.setdefault(event.call_id, {"tool": event.name}).update(
            ok=event.ok, output=(event.output or event.error or "")[:OUTPUT_CHARS]
        )
    elif isinstance(event, ev.TurnFinished):
        repro.answer, repro.status = event.text, event.status
    elif isinstance(event, ev.TurnFailed):
        repro.status, repro.error = "failed", str(event.error.get("message", "the turn failed"))


def verified_share(entries: list[ReplayEntry]) -> str:
    """ "3/4 verified", for a one-line footer."""
    return f"{sum(e.status == VERIFIED for e in entries)}/{len(entries)} verified"
