"""The tool registry: what the agent may call, described once for models and front ends alike.

Every tool declares a JSON-schema for its arguments and a risk tier. The tier, not the tool, decides
whether a human must approve a call (see `core.tools.executor`), so a new tool cannot forget to ask.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.errors import ToolNotFoundError


class RiskTier(StrEnum):
    """How much harm a call can do; decides approval."""

    READ = "read"  # looks, never changes anything
    WRITE = "write"  # changes files or notes inside the workspace / database
    HIGH = "high"  # runs programs or reaches outside: always needs approval unless policy allows


class ApprovalDecision(StrEnum):
    APPROVE_ONCE = "approve_once"
    APPROVE_SESSION = "approve_session"  # approve this tool for the rest of the session
    DENY = "deny"


@dataclass(frozen=True)
class ApprovalRequest:
    """What a person is asked to approve: the exact action, not a paraphrase."""

    tool: str
    risk: RiskTier
    summary: str  # e.g. the exact command line for `shell`
    arguments: dict[str, Any]
    session_id: str


ApprovalCallback = Callable[[ApprovalRequest], Awaitable[ApprovalDecision]]


async def deny_all(_request: ApprovalRequest) -> ApprovalDecision:
    """The safe default when no one is there to ask."""
    return ApprovalDecision.DENY


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object
    risk: RiskTier
    source: str = "builtin"  # "builtin" or "mcp:<server name>"

    def to_openai(self) -> dict[str, Any]:
        """The function-tool shape both the OpenAI API and llama-cpp-python accept."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass
class ToolContext:
    """What a running tool may know about its call."""

    workspace: Path
    session_id: str
    settings: Any = None  # core.settings.ToolSettings; Any to keep this module import-light
    trace: Any = None  # the tool.call span (core.timeline.ids.TraceContext): what a delegated task hangs under
    correlation_id: str = ""
    depth: int = 0  # delegation depth of the turn (group mode)
    label: str = ""  # the turn's sensitivity label as stored (core/policy/labels.py); "": unlabelled or no turn
    requester: Any = None  # core.policy.engine.Requester of the turn (None: a person here)
    policy: Any = None  # core.policy.gate.PolicyGate of the turn's agent (None: no policy engine)
    decided: Any = None  # async (Decision, **payload) -> None: records a policy decision under this tool call


@dataclass
class ToolOutput:
    """`text` goes back to the model; `data` is kept in the timeline for people and tools."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)


class Tool(abc.ABC):
    """A callable capability. Subclasses set `spec` and implement `run`."""

    spec: ToolSpec

    @abc.abstractmethod
    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        """Do the work. Raise `core.errors.ToolError` (or a subclass) for a clear refusal."""

    def approval_summary(self, args: dict[str, Any]) -> str:
        """The exact action shown to a person before a risky call; override to be more precise."""
        return f"{self.spec.name}({args})"

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (subprocesses, sessions). Default: nothing to release."""


class ToolRegistry:
    """Name → tool, with per-tool enable/disable that survives re-registration."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._disabled: set[str] = set()
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        name = tool.spec.name
        if name in self._tools and self._tools[name].spec.source != tool.spec.source:
            raise ValueError(f"tool name clash: {name!r} from {tool.spec.source} and {self._tools[name].spec.source}")
        self._tools[name] = tool

    def unregister_source(self, source: str) -> None:
        for name in [n for n, t in self._tools.items() if t.spec.source == source]:
            del self._tools[name]

    def set_enabled(self, name: str, enabled: bool) -> None:
        if enabled:
            self._disabled.discard(name)
        else:
            self._disabled.add(name)

    def is_enabled(self, name: str) -> bool:
        return name in self._tools and name not in self._disabled

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotFoundError(f"No tool named {name!r}.", f"Use one of: {known}.")
        if name in self._disabled:
            raise ToolNotFoundError(f"Tool {name!r} is disabled.", "Enable it in settings (tools.disabled).")
        return tool

    def all(self) -> list[Tool]:
        return [self._tools[n] for n in sorted(self._tools)]

    def specs(self, *, enabled_only: bool = True) -> list[ToolSpec]:
        return [t.spec for t in self.all() if not enabled_only or t.spec.name not in self._disabled]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    async def aclose(self) -> None:
        for tool in self._tools.values():
            await tool.aclose()
