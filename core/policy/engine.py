"""Deciding: one request (an action on a target, by a requester, for data of a label) against the rules.

The person's rules are tried first, in file order, then the built-in defaults (core/policy/builtin.py); the
first rule that matches decides. Rules are about what crosses a boundary (a model, a zone, a peer) and what
runs (a tool), so the engine is pure: no I/O, no clock but the rate limiters'. Every decision names its rule
and says why the rules before it did not apply, which is what `shoal policy check` prints.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from core.errors import PolicyDenied, RateLimitExceeded, ShoalError
from core.policy.labels import Label, parse_label
from core.policy.ratelimit import RateLimiter
from core.policy.request import LOCAL, PolicyRequest, Requester, is_local_target
from core.policy.schema import ClassifyRule, Effect, PolicyFile, Quota, RateLimit, Rule

# --- rules and decisions ------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleRef:
    """A rule as decisions name it: its name and where it is written."""

    name: str
    file: Path | None = None
    line: int | None = None
    builtin: bool = False
    routine: bool = False  # a built-in default restating what Shoal did before policies (local use)

    @property
    def origin(self) -> str:
        if self.builtin:
            return "built-in"
        if self.file is None:
            return "policy"
        return f"{self.file.name} line {self.line}" if self.line else self.file.name

    @property
    def title(self) -> str:
        return f"built-in rule {self.name!r}" if self.builtin else f"rule {self.name!r} ({self.origin})"


@dataclass(frozen=True)
class RuleEntry:
    rule: Rule
    ref: RuleRef
    otherwise: Effect | None = None  # built-ins: the effect for data above max_label (instead of passing on)


@dataclass(frozen=True)
class Decision:
    request: PolicyRequest
    effect: Effect
    rule: RuleRef
    reason: str
    considered: tuple[tuple[RuleRef, str], ...] = ()  # rules tried before, with why each did not apply
    failure: ShoalError | None = None  # quotas and rate limits: the error to raise (it says when to retry)
    detail: str = ""  # the deciding rule's max_label and description, as the reason ends

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"

    @property
    def denied(self) -> bool:
        return self.effect == "deny"

    @property
    def routine(self) -> bool:
        """A built-in default restating local use as it always was (recorded inside the step it gates); a
        request from a peer is never routine: it gets an event of its own, and the group's audit trail."""
        return self.rule.routine and not self.request.requester.remote

    def payload(self) -> dict[str, Any]:
        """What the timeline (`policy.decision` events) and the audit trail keep of it."""
        req = self.request
        data: dict[str, Any] = {
            "action": req.action,
            "target": req.target,
            "requester": str(req.requester),
            "label": req.label.value,
            "effect": self.effect,
            "rule": self.rule.name,
            "origin": self.rule.origin,
            "reason": self.reason,
        }
        if req.risk:
            data["risk"] = req.risk
        return data

    def event_fields(self) -> dict[str, Any]:
        """name, status and payload of the `policy.decision` timeline event that records it."""
        req = self.request
        status = "denied" if self.denied else "ok"
        return {"name": f"{self.effect} {req.action} {req.target}", "status": status, "payload": self.payload()}

    def error(self) -> ShoalError:
        """The error a denial becomes: what was refused, by which rule, and what to do."""
        return self.failure or PolicyDenied(self.reason + ".", _fix(self.request, self.rule))

    def explain(self) -> str:
        """Decision, deciding rule, and the rules considered before it (for `shoal policy check`)."""
        lines = [f"{self.effect.upper()}: {self.request.phrase()}", f"  decided by {self.rule.title}{self.detail}"]
        if self.failure is not None:
            lines.append(f"  {self.reason}")
        if self.considered:
            lines.append("  rules considered before it:")
            lines += [f"    - {ref.title}: {why}" for ref, why in self.considered]
        return "\n".join(lines)


def _fix(request: PolicyRequest, rule: RuleRef) -> str:
    check = (
        f"`shoal policy check --action {request.action} --target {request.target} --label {request.label}"
        + (f" --requester {request.requester}" if request.requester != LOCAL else "")
        + "` explains it"
    )
    where = "an allow rule to policy.toml" if rule.builtin else f"a change to {rule.origin}"
    if request.action == "model":
        return f"Use a local model for this conversation, or add {where} if this data may go there; {check}."
    if request.action == "tool":
        return f"Do it another way, or add {where} granting this tool; {check}."
    return f"Keep it here, or add {where} if this data may be shared; {check}."


# --- the engine ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classified:
    label: Label
    rule: str  # the classify rule that gave it


@dataclass
class _Limit:
    spec: RateLimit
    ref: RuleRef
    limiter: RateLimiter


@dataclass
class PolicyEngine:
    """The rules in force. Built by `core.policy.loader.load_policy`; `decide` is cheap and synchronous."""

    entries: list[RuleEntry]
    default_label: Label = Label.INTERNAL
    classify_rules: list[tuple[ClassifyRule, RuleRef]] = field(default_factory=list)
    quotas: list[tuple[Quota, RuleRef]] = field(default_factory=list)
    rate_limits: list[tuple[RateLimit, RuleRef]] = field(default_factory=list)
    file: Path | None = None
    enabled: bool = True
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._patterns = {rule.name: re.compile(rule.pattern) for rule, _ in self.classify_rules if rule.pattern}
        self._limits = [_Limit(spec, ref, RateLimiter(spec.per_second, spec.burst, clock=self.clock))
                        for spec, ref in self.rate_limits]  # fmt: skip

    @classmethod
    def from_policy(
        cls, policy: PolicyFile, *, lines: dict[tuple[str, int], int] | None = None, file: Path | None = None,
        default_label: Label = Label.INTERNAL, auto_approve: Iterable[str] = (), enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> PolicyEngine:  # fmt: skip
        """The user's tables (with the line each starts on) followed by the built-in defaults."""
        from core.policy.builtin import builtin_entries

        lines = lines or {}

        def ref(table: str, index: int, name: str) -> RuleRef:
            return RuleRef(name, file, lines.get((table, index)))

        user = [RuleEntry(rule, ref("rules", n, rule.name)) for n, rule in enumerate(policy.rules)] if enabled else []
        return cls(
            entries=user + builtin_entries(list(auto_approve), enabled=enabled),
            default_label=default_label,
            classify_rules=[(r, ref("classify", n, r.name)) for n, r in enumerate(policy.classify)] if enabled else [],
            quotas=[(q, ref("quotas", n, q.name)) for n, q in enumerate(policy.quotas)] if enabled else [],
            rate_limits=[(r, ref("rate_limits", n, r.name)) for n, r in enumerate(policy.rate_limits)]
            if enabled
            else [],
            file=file,
            enabled=enabled,
            clock=clock,
        )

    # --- rules ---------------------------------------------------------------------------------

    def decide(self, request: PolicyRequest) -> Decision:
        considered: list[tuple[RuleRef, str]] = []
        for entry in self.entries:
            if entry.rule.action != request.action:
                continue
            why_not = _mismatch(entry.rule, request)
            effect: Effect | None = entry.rule.effect if why_not is None else None
            if why_not is not None and entry.otherwise and why_not.startswith(_ABOVE):
                effect = entry.otherwise
            if effect is None:
                considered.append((entry.ref, why_not or ""))
                continue
            detail = _detail(entry)
            reason = f"{entry.ref.title} {_VERBS[effect]} {request.phrase()}{detail}"
            return Decision(request, effect, entry.ref, reason, tuple(considered), detail=detail)
        # unreachable with the built-ins (each action ends in a catch-all), kept for a hand-built engine
        return Decision(request, "deny", RuleRef("no-rule", builtin=True), "no rule matched", tuple(considered))

    # --- labels --------------------------------------------------------------------------------

    def classify(self, text: str | None = None, source: str | None = None) -> Classified | None:
        """The highest label the `[[classify]]` rules give this text and/or file path (None: none matched)."""
        best: Classified | None = None
        for rule, _ref in self.classify_rules:
            if rule.pattern is not None and (text is None or not self._patterns[rule.name].search(text)):
                continue
            if rule.source is not None and (source is None or not fnmatchcase(source, rule.source)):
                continue
            if best is None or rule.label > best.label:
                best = Classified(rule.label, rule.name)
        return best

    def stored_label(self, text: str | None, *, explicit: Label | str | None = None, source: str | None = None
                     ) -> Label | None:  # fmt: skip
        """The label to store with new data: the person's, else the classifier's, else None (unlabelled)."""
        if explicit is not None:
            return parse_label(explicit)
        found = self.classify(text, source)
        return found.label if found else None

    def label_for(self, text: str | None, *, explicit: Label | str | None = None, source: str | None = None
                  ) -> Label:  # fmt: skip
        """The effective label: the person's, else the classifier's, else `default_label`."""
        return self.stored_label(text, explicit=explicit, source=source) or self.default_label

    # --- rate limits ---------------------------------------------------------------------------

    def limits_for(self, request: PolicyRequest) -> list[str]:
        """Quotas (model calls) and rate limits (tools) that would count `request`, in words (`policy check`)."""
        found = []
        if request.action == "model":
            for quota, ref in self.quotas:
                if quota.scope == "provider" and matches(quota.target, (request.target,)):
                    found.append(f"quota {quota.name!r} ({ref.origin}): {quota.tokens:,} tokens per {quota.period}")
        if request.action == "tool":
            for limit, ref in self.rate_limits:
                if (
                    limit.scope == "tool"
                    and matches(limit.target, (request.target,), fold=True)
                    and matches(limit.requester, request.requester.names())
                ):
                    found.append(f"rate limit {limit.name!r} ({ref.origin}): {limit.per_second * 60:g}/min, "
                                 f"burst {limit.burst}")  # fmt: skip
        return found

    def limit(self, scope: str, target: str, requester: Requester) -> Decision | None:
        """Take one token from each bucket that applies; a denial (naming the limit and when to retry) if
        one is empty. Scope `tool`: target = the tool; scope `peer`: a task from `requester`."""
        names = requester.names() if scope == "peer" else (target,)
        for item in self._limits:
            spec = item.spec
            if spec.scope != scope or not matches(spec.target, names, fold=scope == "tool"):
                continue
            if scope == "tool" and not matches(spec.requester, requester.names()):
                continue
            # a peer is counted under its agent id alone: a name is the peer's own choice, and a new one must
            # not bring a full bucket
            key = requester.key if scope == "peer" else f"{target.lower()}|{requester.key}"
            wait = item.limiter.acquire(key)
            if wait > 0:
                request = PolicyRequest("tool" if scope == "tool" else "peer", target, requester)
                every = f"{spec.per_minute:g} per minute" if spec.per_minute else f"{spec.per_second:g} per second"
                reason = (
                    f"rate limit {spec.name!r} ({item.ref.origin}) allows {every} (burst {spec.burst}) "
                    f"for {target if scope == 'tool' else requester}"
                )
                wait = max(wait, 1.0)
                failure = RateLimitExceeded(reason + ".", f"Try again in {wait:.0f} s.", retry_after=wait)
                return Decision(request, "deny", item.ref, reason, failure=failure)
        return None


_ABOVE = "above"


def matches(globs: Iterable[str], names: Iterable[str], *, fold: bool = False) -> bool:
    """Whether any glob matches any name; `fold`: ignoring case (tool names: `Web_Fetch` is `web_fetch`)."""
    names = tuple(n.lower() for n in names) if fold else tuple(names)
    for glob in globs:
        if glob == "@local" and any(is_local_target(n) for n in names):
            return True
        if glob == "@remote" and names and not is_local_target(names[0]):
            return True
        if any(fnmatchcase(n, glob.lower() if fold else glob) for n in names):
            return True
    return False


def _mismatch(rule: Rule, request: PolicyRequest) -> str | None:
    """Why `rule` does not apply to `request` (None: it applies)."""
    if not matches(rule.target, (request.target, *request.aliases), fold=request.action == "tool"):
        return f"target {request.target} does not match {', '.join(rule.target)}"
    if not matches(rule.requester, request.requester.names()):
        return f"requester {request.requester} does not match {', '.join(rule.requester)}"
    if rule.risk is not None and request.risk != rule.risk:
        return f"the tool's risk is {request.risk or 'unknown'}, not {rule.risk}"
    if rule.max_label is not None:
        above = request.label > rule.max_label
        if rule.effect == "allow" and above:
            return f"{_ABOVE} its max_label: {request.label} is above {rule.max_label}"
        if rule.effect != "allow" and not above:
            return f"{request.label} is at or below its max_label {rule.max_label}, which it lets through"
    return None


_VERBS = {"allow": "allows", "deny": "denies", "ask": "asks a person before"}


def _detail(entry: RuleEntry) -> str:
    text = f" (it lets through up to {entry.rule.max_label})" if entry.rule.max_label is not None else ""
    return text + (f": {entry.rule.description}" if entry.rule.description else "")
