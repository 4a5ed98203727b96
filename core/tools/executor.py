"""Checks and runs one tool call: lookup, argument parsing and validation, approval, timeout.

The agent loop drives the steps (so each is recorded in the timeline before the next); this module
decides them. Approval is decided by risk tier, never by the tool, so no tool can forget to ask; with a policy
engine (core/policy/), by its rules, whose built-in defaults ask for high-risk tools as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ApprovalDenied, ShoalError, ToolError, classify
from core.providers.base import ToolCall
from core.settings import ToolSettings
from core.tools.registry import (
    ApprovalCallback,
    ApprovalDecision,
    ApprovalRequest,
    RiskTier,
    Tool,
    ToolContext,
    ToolOutput,
    ToolRegistry,
)

if TYPE_CHECKING:
    from core.policy.engine import Decision, PolicyEngine
    from core.policy.request import Requester

log = logging.getLogger(__name__)
RISK_NAMES = {RiskTier.READ: "low", RiskTier.WRITE: "medium", RiskTier.HIGH: "high"}  # the policy's words


@dataclass
class PreparedCall:
    call: ToolCall
    tool: Tool
    args: dict[str, Any]

    @property
    def risk(self) -> RiskTier:
        return self.tool.spec.risk


@dataclass
class ToolRun:
    ok: bool
    output: ToolOutput | None
    error: ShoalError | None
    duration_ms: float

    @property
    def text_for_model(self) -> str:
        if self.ok and self.output is not None:
            return self.output.text
        assert self.error is not None
        return f"ERROR: {self.error.message}" + (f" ({self.error.fix})" if self.error.fix else "")


def _parse_arguments(call: ToolCall) -> dict[str, Any]:
    raw = call.arguments.strip() or "{}"
    try:
        args = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ToolError(
            f"The arguments for {call.name!r} are not valid JSON ({exc.msg} at char {exc.pos}): {raw[:200]}",
            "Call the tool again with a JSON object of arguments.",
        ) from exc
    if not isinstance(args, dict):
        raise ToolError(f"The arguments for {call.name!r} must be a JSON object.", "Pass an object like {...}.")
    return args


def _validate(tool: Tool, args: dict[str, Any]) -> None:
    import jsonschema  # imported on first tool call; keeps startup light

    validator = jsonschema.Draft202012Validator(tool.spec.parameters)
    errors = sorted(validator.iter_errors(args), key=lambda e: list(e.path))
    if errors:
        detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5])
        raise ToolError(f"Invalid arguments for {tool.spec.name!r}: {detail}", "Fix the arguments and call again.")


class ToolExecutor:
    def __init__(
        self,
        registry: ToolRegistry,
        settings: ToolSettings,
        approve: ApprovalCallback,
        policy: PolicyEngine | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.approve = approve
        self.policy = policy
        self._session_approved: dict[str, set[str]] = {}

    def prepare(self, call: ToolCall) -> PreparedCall:
        """Raises ToolError (not found, disabled, malformed or invalid arguments)."""
        if not call.name:
            raise ToolError(
                f"The model wrote a tool call that could not be read: {call.arguments[:200]}",
                'Write tool calls as {"name": ..., "arguments": {...}}.',
            )
        tool = self.registry.get(call.name)
        args = _parse_arguments(call)
        _validate(tool, args)
        return PreparedCall(call, tool, args)

    def authorize(self, prepared: PreparedCall, requester: Requester, label: Any) -> Decision | None:
        """The policy's decision on this call (None without a policy): its rules, then the rate limits that
        apply to the tool (each call takes a token, so a burst past `burst` is refused)."""
        if self.policy is None:
            return None
        from core.policy.request import PolicyRequest

        name = prepared.tool.spec.name
        request = PolicyRequest("tool", name, requester, label, risk=RISK_NAMES[prepared.risk])  # type: ignore[arg-type]
        decision = self.policy.decide(request)
        if decision.denied:
            return decision
        return self.policy.limit("tool", name, requester) or decision

    def standing_approval(
        self, prepared: PreparedCall, session_id: str, decision: Decision | None = None
    ) -> str | None:
        """Why no question is needed ('auto', 'session', 'not_required'), or None when a person must decide.
        With the policy's `decision`: allow needs no question (a high-risk tool counts as 'auto'), ask does."""
        name = prepared.tool.spec.name
        if decision is not None:
            if decision.allowed:
                return "auto" if prepared.risk is RiskTier.HIGH else "not_required"
            return "session" if name in self._session_approved.get(session_id, set()) else None
        if prepared.risk is not RiskTier.HIGH:
            return "not_required"
        if name in self.settings.auto_approve:
            return "auto"
        if name in self._session_approved.get(session_id, set()):
            return "session"
        return None

    async def ask(self, prepared: PreparedCall, session_id: str) -> ApprovalDecision:
        request = ApprovalRequest(
            tool=prepared.tool.spec.name,
            risk=prepared.risk,
            summary=prepared.tool.approval_summary(prepared.args),
            arguments=prepared.args,
            session_id=session_id,
        )
        try:
            decision = await self.approve(request)
        except asyncio.CancelledError:
            raise
        except Exception:  # whoever was asked could not answer (closed terminal, dialog crashed): not approved
            log.warning("approval for %s failed; treated as denied", request.tool, exc_info=True)
            return ApprovalDecision.DENY
        if decision is ApprovalDecision.APPROVE_SESSION:
            self._session_approved.setdefault(session_id, set()).add(request.tool)
        return decision

    async def run(self, prepared: PreparedCall, ctx: ToolContext) -> ToolRun:
        """Never raises for tool failures: they become a ToolRun the model is told about."""
        started = time.perf_counter()
        try:
            output = await asyncio.wait_for(prepared.tool.run(prepared.args, ctx), self.settings.timeout)
            return ToolRun(True, output, None, (time.perf_counter() - started) * 1000)
        except TimeoutError:
            error: ShoalError = ToolError(
                f"{prepared.tool.spec.name} did not finish within {self.settings.timeout:g} s.",
                "Try a smaller request, or raise tools.timeout.",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = classify(exc)
        return ToolRun(False, None, error, (time.perf_counter() - started) * 1000)

    @staticmethod
    def refused(decision: Decision) -> ToolRun:
        """A call the policy denied (a rule or a rate limit): the model is told why, as for a denial."""
        return ToolRun(False, None, decision.error(), 0.0)

    @staticmethod
    def denied(prepared: PreparedCall) -> ToolRun:
        error = ApprovalDenied(
            f"The user did not approve {prepared.tool.spec.name}: {prepared.tool.approval_summary(prepared.args)}",
            "Do not retry the same call; ask the user or find another way.",
        )
        return ToolRun(False, None, error, 0.0)
