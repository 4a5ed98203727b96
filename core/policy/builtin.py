"""The built-in default rules, tried after the person's own (first match wins), and shown by name.

They keep local use as it always was (the local model sees everything, low- and medium-risk tools run, a
high-risk tool asks unless `tools.auto_approve` lists it) and put limits on what leaves the machine: a remote
endpoint sees up to `internal`, zone `public` takes public data only, `shared` up to internal, any other zone
(private) up to confidential, peers up to internal, and a task from a peer may use low-risk tools only.
"""

from __future__ import annotations

from typing import Any

from core.policy.engine import RuleEntry, RuleRef
from core.policy.schema import Effect, Rule


def _entry(name: str, description: str, *, routine: bool = False, otherwise: Effect | None = None,
           **rule: Any) -> RuleEntry:  # fmt: skip
    return RuleEntry(
        Rule(name=f"builtin:{name}", description=description, **rule),
        RuleRef(f"builtin:{name}", builtin=True, routine=routine),
        otherwise,
    )


def builtin_entries(auto_approve: list[str], *, enabled: bool = True) -> list[RuleEntry]:
    if not enabled:
        return _policy_off(auto_approve)
    entries = [
        _entry("local-model", "the local model sees everything", routine=True,
               effect="allow", action="model", target="@local"),
        _entry("remote-model", "a remote endpoint sees up to internal", otherwise="deny",
               effect="allow", action="model", max_label="internal"),
        _entry("zone-public", "zone public takes public data only", otherwise="deny",
               effect="allow", action="zone", target="public", max_label="public"),
        _entry("zone-shared", "zone shared takes up to internal", otherwise="deny",
               effect="allow", action="zone", target="shared", max_label="internal"),
        _entry("zone-private", "any other zone is private: up to confidential", otherwise="deny",
               effect="allow", action="zone", max_label="confidential"),
        _entry("peers", "peers see up to internal", otherwise="deny",
               effect="allow", action="peer", max_label="internal"),
        _entry("peer-low-risk-tools", "a task from a peer may use low-risk tools",
               effect="allow", action="tool", requester="peer:*", risk="low"),
        _entry("peer-other-tools", "a task from a peer may use low-risk tools only",
               effect="deny", action="tool", requester="peer:*"),
    ]  # fmt: skip
    return entries + _local_tools(auto_approve, "")


def _local_tools(auto_approve: list[str], prefix: str) -> list[RuleEntry]:
    entries = []
    if auto_approve:
        entries.append(_entry(f"{prefix}auto-approve", "tools.auto_approve lists it", routine=True,
                              effect="allow", action="tool", target=list(auto_approve), risk="high"))  # fmt: skip
    return [
        *entries,
        _entry(f"{prefix}high-risk-ask", "a high-risk tool asks for approval", routine=True,
               effect="ask", action="tool", risk="high"),
        _entry(f"{prefix}tools", "low- and medium-risk tools run", routine=True, effect="allow", action="tool"),
    ]  # fmt: skip


def _policy_off(auto_approve: list[str]) -> list[RuleEntry]:
    """policy.enabled = false: everything is allowed as before policies, approvals by risk tier included."""
    entries = _local_tools(auto_approve, "policy-off-")
    for action in ("model", "zone", "peer"):
        entries.append(_entry(f"policy-off-{action}", "the policy engine is switched off", routine=True,
                              effect="allow", action=action))  # fmt: skip
    return entries
