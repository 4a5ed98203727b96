"""How the policy reads in the desktop: label and decision colours, timeline rows for `policy.decision`, the
routine decision a gated step carries, and the rules table's cells. Pure functions, Qt-free.

Colours come from the risk tiers (ui/widgets/risk.py) so one meaning keeps one colour everywhere: green is
"fine" (a read-only tool, public data, an allow), amber "take care" (a write tool, confidential data, an ask),
red "stop" (a high-risk tool, secret data, a deny). Internal, the usual default, is the neutral grey.
"""

from __future__ import annotations

from typing import Any

from core.policy.labels import NAMES
from core.timeline.store import Event
from core.tools.registry import RiskTier
from ui.widgets.risk import RISK_COLORS, UNKNOWN_COLOR

LABEL_COLORS = {
    "public": RISK_COLORS[RiskTier.READ],
    "internal": UNKNOWN_COLOR,
    "confidential": RISK_COLORS[RiskTier.WRITE],
    "secret": RISK_COLORS[RiskTier.HIGH],
}
LABEL_HELP = {
    "public": "public: anyone may see it",
    "internal": "internal: yours and your own machines'; remote models see up to this by default",
    "confidential": "confidential: stays with the local model unless a rule of yours lets it go",
    "secret": "secret: never leaves this machine by the built-in rules",
}
EFFECT_COLORS = {
    "allow": RISK_COLORS[RiskTier.READ],
    "ask": RISK_COLORS[RiskTier.WRITE],
    "deny": RISK_COLORS[RiskTier.HIGH],
}
AUTO = "auto"
PICKER_HELP = (
    "The sensitivity label of the messages you send in this thread.\n"
    "auto: the policy's [[classify]] rules label the text, else policy.default_label ({default}) applies.\n"
    "public < internal < confidential < secret: the policy decides which models, tools and peers may see it\n"
    "(by default a remote model sees up to internal; the local model sees everything).\n"
    "The choice stays with this thread until you change it; a new thread starts at auto."
)


def label_color(label: str) -> str:
    return LABEL_COLORS.get(label, UNKNOWN_COLOR)


def effect_color(effect: str) -> str:
    return EFFECT_COLORS.get(effect, UNKNOWN_COLOR)


def badge_label(label: str | None, default: str) -> str | None:
    """The label a message's badge shows: its own when it differs from the default (what everything unlabelled
    counts as anyway, so no badge is the usual case), else None."""
    if not label or label not in NAMES or label == default:
        return None
    return label


def rule_text(rule: str, origin: str) -> str:
    """`no-confidential-to-remote (policy.toml line 12)`, `builtin:remote-model (built-in)`: the rule and where
    it is written, so a person can go straight to the line."""
    return f"{rule} ({origin})" if origin else rule


def decision_label(event: Event) -> str:
    """`policy · deny model openai:api.openai.com (confidential) — rule no-confidential-to-remote`."""
    p = event.payload
    label = f" ({p['label']})" if p.get("label") else ""
    risk = f" [{p['risk']}-risk]" if p.get("risk") else ""
    who = f" for {p['requester']}" if p.get("requester") not in (None, "", "local") else ""
    withheld = " · memories withheld" if p.get("withheld") else ""
    head = f"policy · {p.get('effect', '?')} {p.get('action', '?')} {p.get('target', '?')}{risk}{label}{who}"
    return f"{head} — rule {p.get('rule', '?')}{withheld}"


def decision_summary(payload: dict[str, Any]) -> str:
    """The readable part of a decision for the detail view: what was decided, by which rule (file and line),
    and why. Also used for the routine decision a model call or tool call carries in its `policy` field."""
    effect = str(payload.get("effect", "?"))
    rows = [
        ("decision", effect.upper()),
        ("action", f"{payload.get('action', '?')} → {payload.get('target', '?')}"),
        ("data label", str(payload.get("label") or "—")),
        ("requester", str(payload.get("requester") or "local")),
        ("rule", rule_text(str(payload.get("rule", "?")), str(payload.get("origin", "")))),
    ]
    if payload.get("risk"):
        rows.insert(2, ("tool risk", str(payload["risk"])))
    if payload.get("withheld"):
        ids = payload.get("memory_ids") or []
        rows.append(("withheld", f"{len(ids)} recalled memor{'y' if len(ids) == 1 else 'ies'} left out"))
    width = max(len(key) for key, _ in rows)
    text = "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
    reason = payload.get("reason")
    return f"{text}\n\nwhy:\n{reason}" if reason else text


def decision_tooltip(event: Event) -> str:
    return str(event.payload.get("reason") or decision_label(event))


def routine_decision(event: Event) -> dict[str, Any] | None:
    """The routine decision a model call or tool call carries (`policy` in its payload), if any."""
    found = event.payload.get("policy")
    return found if isinstance(found, dict) else None


def conditions(target: str, requester: str, max_label: str, risk: str) -> str:
    """A rule's conditions as `shoal policy show` prints them, leaving out the match-anything ones."""
    bits = [f"target={target}" if target and target != "*" else "",
            f"requester={requester}" if requester and requester != "*" else "",
            f"max_label={max_label}" if max_label else "", f"risk={risk}" if risk else ""]  # fmt: skip
    return " ".join(b for b in bits if b) or "anything"
