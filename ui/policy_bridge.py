"""The policy for the widgets: the rules in force, reloading the file, quota usage, and explaining a decision.

Owned by `Bridge` (as `bridge.policy`) and reached only through it, so widgets never hold the core's `Policy`
or its engine. The engine is read afresh on every query: `AgentCore` swaps it when the file is reloaded or
the `[policy]` settings change, and the view must show the rules that decide the next turn.

In remote mode the core is a client of a `shoal serve`, whose policy lives on the server: it has no `policy`
here, `available` is False, and the widgets say "Managed on the server" instead of asking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from core.errors import ConfigError, UserError
from core.policy.labels import parse_label
from core.policy.request import PolicyRequest, Requester, model_target
from ui.widgets.policy_format import conditions

if TYPE_CHECKING:
    from core.policy.engine import Decision, PolicyEngine
    from core.policy.quotas import QuotaUsage

log = logging.getLogger(__name__)
REMOTE = UserError("The policy is managed on the server.", "Use `shoal policy …` on the machine running it.")
ACTIONS = ("model", "tool", "zone", "peer")


@dataclass(frozen=True)
class RuleRow:
    """One rule as `shoal policy show` lists it, in the order rules are tried."""

    name: str
    effect: str  # allow | deny | ask, with "(else deny)" for a built-in that denies above its max_label
    action: str
    conditions: str
    origin: str  # "policy.toml line 12" | "built-in"
    description: str
    builtin: bool


@dataclass(frozen=True)
class Checked:
    """What `shoal policy check` says: the decision, and the quotas and rate limits that would also count."""

    decision: Decision
    limits: list[str]

    @property
    def explanation(self) -> str:
        return "\n".join([self.decision.explain(), *(f"  also limited by {limit}" for limit in self.limits)])


class PolicyBridge(QObject):
    changed = Signal()  # the rules were reloaded (from the file, or a new example file)

    def __init__(self, core: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.core = core

    # --- what is in force ------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """The core decides here (False in remote mode: the server's policy decides)."""
        return getattr(self.core, "policy", None) is not None and hasattr(self.core, "reload_policy")

    def _engine(self) -> PolicyEngine:
        if not self.available:
            raise REMOTE
        engine: PolicyEngine = self.core.policy.engine
        return engine

    @property
    def default_label(self) -> str:
        """What anything unlabelled counts as (`policy.default_label`); "internal" when not decided here."""
        return self._engine().default_label.value if self.available else "internal"

    @property
    def enabled(self) -> bool:
        return self._engine().enabled

    def file_in_use(self) -> Path | None:
        """The policy file the rules were read from (None: no file, the built-in defaults only)."""
        return self._engine().file

    def file_path(self) -> Path:
        """Where the policy file is, or would be (`policy.file`, else policy.toml beside config.toml)."""
        from core.policy.loader import policy_path

        self._engine()
        return self.file_in_use() or policy_path(self.core.settings, self.core.policy.config_file)

    def rules(self) -> list[RuleRow]:
        """Yours in file order, then the built-in defaults: the first that matches decides."""
        return [
            RuleRow(
                name=e.ref.name,
                effect=e.rule.effect + (f" (else {e.otherwise})" if e.otherwise else ""),
                action=e.rule.action,
                conditions=conditions(
                    ", ".join(e.rule.target),
                    ", ".join(e.rule.requester),
                    e.rule.max_label.value if e.rule.max_label else "",
                    e.rule.risk or "",
                ),
                origin=e.ref.origin,
                description=e.rule.description,
                builtin=e.ref.builtin,
            )
            for e in self._engine().entries
        ]

    def other_tables(self) -> list[str]:
        """Classify rules, quotas and rate limits, one line each (as `shoal policy show` ends)."""
        engine = self._engine()
        lines = []
        for rule, ref in engine.classify_rules:
            how = " and ".join(p for p in (f"pattern '{rule.pattern}'" if rule.pattern else "",
                                            f"source '{rule.source}'" if rule.source else "") if p)  # fmt: skip
            lines.append(f"classify {rule.name} ({ref.origin}): {how} → {rule.label}")
        for quota, ref in engine.quotas:
            lines.append(f"quota {quota.name} ({ref.origin}): {quota.scope} {', '.join(quota.target)}: "
                         f"{quota.tokens:,} tokens per {quota.period}")  # fmt: skip
        for limit, ref in engine.rate_limits:
            who = ", ".join(limit.requester)
            lines.append(f"rate limit {limit.name} ({ref.origin}): {limit.scope} {', '.join(limit.target)} for "
                         f"{who}: {limit.per_second * 60:g}/min, burst {limit.burst}")  # fmt: skip
        return lines

    async def usage(self) -> list[QuotaUsage]:
        """Each quota's tokens in its current period, per target counted, and when it resets."""
        self._engine()
        rows: list[QuotaUsage] = await self.core.policy.quotas.usage()
        return rows

    # --- commands ------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the policy file; from the next turn on. A bad file raises ConfigError naming its line, and
        the rules in force stay as they were."""
        self._engine()
        self.core.reload_policy()
        self.changed.emit()

    def create_file(self) -> Path:
        """Write the commented example policy where the file belongs (as `shoal policy init`; never
        overwrites), then read it. Returns its path."""
        from core.policy.example import EXAMPLE_POLICY
        from core.policy.loader import parse_policy

        path = self.file_path()
        parse_policy(EXAMPLE_POLICY, path)  # the example is always valid; this keeps it so
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite, even in a race
                handle.write(EXAMPLE_POLICY)
        except FileExistsError:
            pass  # someone made it meanwhile: open theirs as it is
        except OSError as exc:
            raise ConfigError(f"Cannot write {path}: {exc.strerror}", "Check the folder's permissions.") from exc
        self.reload()
        return path

    # --- explaining a decision ---------------------------------------------------------------------

    def default_target(self, action: str) -> str:
        """The configured model for `model`, this agent's zone for `zone`, else nothing to suggest."""
        settings = self.core.settings
        if action == "model":
            return model_target(settings.model.provider, settings.model.base_url)
        if action == "zone":
            return str(settings.group.zone)
        return ""

    def targets(self, action: str) -> list[str]:
        """Suggestions for the target field: the configured model and common endpoints, the tools, the zones."""
        default = self.default_target(action)
        if action == "model":
            found = [default, "llama_cpp", "openai:localhost", "openai:api.openai.com", "openai:openrouter.ai"]
        elif action == "tool":
            found = sorted(spec.name for spec in self.core.tool_specs())
        elif action == "zone":
            found = [default, "public", "shared", "private"]
        else:
            found = []
        return list(dict.fromkeys(t for t in found if t))

    def tool_risk(self, name: str) -> str:
        """A tool's risk in the policy's words (low, medium, high); tools not known here count as high."""
        from core.tools.executor import RISK_NAMES

        return next((RISK_NAMES[s.risk] for s in self.core.tool_specs() if s.name == name), "high")

    def check(self, action: str, target: str, requester: str = "local", label: str = "", risk: str = "") -> Checked:
        """What the rules would decide (as `shoal policy check`); nothing is recorded or asked."""
        engine = self._engine()
        if action not in ACTIONS:
            raise UserError(f"Unknown action {action!r}.", f"Use one of: {', '.join(ACTIONS)}.")
        target = target.strip() or self.default_target(action)
        if not target:
            raise UserError(f"A target is needed for action {action} (a tool name or a peer's name).", "Enter one.")
        if action == "tool" and not risk:
            risk = self.tool_risk(target)
        who = Requester.parse(requester.strip() or "local")
        request = PolicyRequest(action, target, who, parse_label(label or engine.default_label),  # type: ignore[arg-type]
                                risk=(risk or None) if action == "tool" else None)  # type: ignore[arg-type]  # fmt: skip
        return Checked(engine.decide(request), engine.limits_for(request))
