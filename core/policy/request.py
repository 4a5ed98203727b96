"""What the policy decides on: an action on a target, by a requester, for data of a label.

Targets are named as rules write them: a model backend (`llama_cpp`, `openai:<host>`), a tool name, a zone
name, a peer's name or agent id. Requesters likewise: `local`, `peer:<name>`, `schedule`, `api`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.policy.labels import Label
from core.policy.schema import Action, Risk

LOCAL_BACKENDS = frozenset({"llama_cpp", "scripted"})


def model_target(provider: str, base_url: str = "") -> str:
    """How rules name a model backend: `llama_cpp`, or `openai:<host>` for an OpenAI-compatible endpoint."""
    if provider != "openai":
        return provider
    host = urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or base_url or "unknown"
    return f"openai:{host.lower()}"


def is_local_target(target: str) -> bool:
    """A model on this machine: llama.cpp in process, or an endpoint on a loopback address."""
    if target in LOCAL_BACKENDS:
        return True
    if not target.startswith("openai:"):
        return False
    host = target.removeprefix("openai:").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Requester:
    """Who asked: `local` (a person here), `peer` (a task from a group member), or another front end's word
    (`schedule`, `api`). Rules match its names: `local`, `peer:<name>` and `peer:<agent id>`…"""

    kind: str = "local"
    name: str = ""
    agent_id: str = ""

    @classmethod
    def parse(cls, value: Requester | str | None) -> Requester:
        if value is None or isinstance(value, Requester):
            return value or LOCAL
        text = value.strip()
        if text.startswith("peer:"):
            return cls("peer", text.removeprefix("peer:"))
        return cls(text or "local")

    @property
    def remote(self) -> bool:
        return self.kind == "peer"

    @property
    def key(self) -> str:
        """What quotas and rate limits count under: a peer's agent id when known (names are not unique)."""
        return f"peer:{self.agent_id or self.name or 'unknown'}" if self.remote else self.kind

    def names(self) -> tuple[str, ...]:
        if not self.remote:
            return (self.kind,)
        names = [f"peer:{self.name or self.agent_id or 'unknown'}"]
        if self.agent_id and self.name:
            names.append(f"peer:{self.agent_id}")
        return tuple(names)

    def __str__(self) -> str:
        return self.names()[0]


LOCAL = Requester()


@dataclass(frozen=True)
class PolicyRequest:
    action: Action
    target: str
    requester: Requester = LOCAL
    label: Label = Label.INTERNAL
    risk: Risk | None = None  # tools: low | medium | high
    aliases: tuple[str, ...] = ()  # other names of the target (a peer's agent id)

    def phrase(self) -> str:
        """The request in words, for reasons and questions."""
        if self.action == "model":
            return f"sending {self.label} data to the model {self.target}"
        if self.action == "tool":
            risk = f"{self.risk}-risk " if self.risk else ""
            return f"{self.requester} using the {risk}tool {self.target} (data: {self.label})"
        if self.action == "zone":
            return f"sharing {self.label} data with zone {self.target}"
        return f"sending {self.label} data to peer {self.target}"
