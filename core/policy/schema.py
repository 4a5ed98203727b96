"""The policy file's schema (docs/policy.md): pydantic models of policy.toml, strict about unknown keys.

Four kinds of tables: `[[classify]]` (labels from text patterns or file paths), `[[rules]]` (who may see or use
what), `[[quotas]]` (tokens per day or month) and `[[rate_limits]]` (token buckets). Globs (`target`,
`requester`, `source`) use shell wildcards (`*`, `?`, `[abc]`); `*` also crosses `/` and `:`. A target or
requester may be one glob or a list of globs (any matching counts). Model targets are normalised as requests
name them (`openai:` + the host in lower case, no port, no IPv6 brackets); tool names match ignoring case.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.policy.labels import NAMES, Label

Effect = Literal["allow", "deny", "ask"]
Action = Literal["model", "tool", "zone", "peer"]
Risk = Literal["low", "medium", "high"]
RISK_ALIASES = {"read": "low", "write": "medium"}  # the tool registry's tier names
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$"


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _globs(value: Any) -> Any:
    """One glob or a list of globs, kept as a tuple; an empty list would match nothing and is refused."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("needs at least one glob")
        return tuple(value)
    return value


_PORT = re.compile(r"^(?P<host>[^:\[\]]*):(?P<port>\d+|\*)$")
_BRACKETED = re.compile(r"^\[(?P<host>[0-9A-Fa-f:.*?]*:[0-9A-Fa-f:.*?]*)\](:(\d+|\*))?$")


def model_glob(glob: str) -> str:
    """A model target as requests name it: `openai:<host>` with the host in lower case, without a port or the
    brackets of an IPv6 address (`openai:API.example.com:8080` is `openai:api.example.com`, `openai:[fd00::5]`
    is `openai:fd00::5`), since that is all a request's target keeps of the endpoint's URL."""
    prefix, sep, host = glob.partition(":")
    if not sep or prefix.lower() != "openai":
        return glob
    if bracketed := _BRACKETED.match(host):
        host = bracketed.group("host")
    elif port := _PORT.match(host):
        host = port.group("host")
    return f"openai:{host.lower()}"


def _model_globs(value: Any) -> Any:
    globs = _globs(value)
    return tuple(model_glob(g) if isinstance(g, str) else g for g in globs) if isinstance(globs, tuple) else globs


def _label(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() not in NAMES:
        raise ValueError(f"unknown label {value!r}; use one of: {', '.join(NAMES)}")
    return value.strip().lower() if isinstance(value, str) else value


class ClassifyRule(_Table):
    """Labels text matching `pattern` (a regular expression, searched anywhere) and/or files whose path or uri
    matches `source`; with both, both must match. The highest label of all matching rules wins."""

    name: str = Field(pattern=NAME_PATTERN)
    label: Label
    pattern: str | None = None
    source: str | None = None
    description: str = ""

    _label_check = field_validator("label", mode="before")(_label)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _needs_a_condition(self) -> ClassifyRule:
        if self.pattern is None and self.source is None:
            raise ValueError("a classify rule needs `pattern`, `source` or both")
        return self


class Rule(_Table):
    """Who may see or use what. `max_label` is the highest label the rule lets through: an allow rule applies
    only to data at or below it; a deny or ask rule only to data above it (what is at or below passes on to
    the next rule). `risk` limits a tool rule to tools of that risk tier."""

    name: str = Field(pattern=NAME_PATTERN)
    effect: Effect
    action: Action
    target: tuple[str, ...] = ("*",)
    requester: tuple[str, ...] = ("*",)
    max_label: Label | None = None
    risk: Risk | None = None
    description: str = ""

    _glob_check = field_validator("target", "requester", mode="before")(_globs)
    _label_check = field_validator("max_label", mode="before")(_label)

    @field_validator("risk", mode="before")
    @classmethod
    def _risk_alias(cls, value: Any) -> Any:
        return RISK_ALIASES.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _model_targets(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("action") == "model" and "target" in data:
            return {**data, "target": _model_globs(data["target"])}
        return data

    @model_validator(mode="after")
    def _risk_on_tools_only(self) -> Rule:
        if self.risk is not None and self.action != "tool":
            raise ValueError('`risk` applies to tool rules only (action = "tool")')
        return self


class Quota(_Table):
    """At most `tokens` (input + output) per `period` for each target the glob matches (counted separately:
    `target = "*"` gives every provider, or every peer, an allowance of its own). Periods reset at local
    midnight (day) or on the 1st of the month at 00:00 (month)."""

    name: str = Field(pattern=NAME_PATTERN)
    scope: Literal["provider", "peer"]
    target: tuple[str, ...] = ("*",)
    tokens: int = Field(gt=0)
    period: Literal["day", "month"]
    description: str = ""

    _glob_check = field_validator("target", mode="before")(_globs)

    @model_validator(mode="before")
    @classmethod
    def _provider_targets(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("scope") == "provider" and "target" in data:
            return {**data, "target": _model_globs(data["target"])}
        return data


class RateLimit(_Table):
    """A token bucket: `burst` calls at once, refilled at `rate` per second (or `per_minute`). Scope `tool`
    counts calls of the tools the target matches (each tool its own bucket, per requester); scope `peer`
    counts the tasks each matching peer sends this agent."""

    name: str = Field(pattern=NAME_PATTERN)
    scope: Literal["tool", "peer"]
    target: tuple[str, ...] = ("*",)
    requester: tuple[str, ...] = ("*",)
    rate: float | None = Field(None, gt=0, description="tokens per second")
    per_minute: float | None = Field(None, gt=0, description="tokens per minute (instead of rate)")
    burst: int = Field(1, ge=1)
    description: str = ""

    _glob_check = field_validator("target", "requester", mode="before")(_globs)

    @model_validator(mode="after")
    def _one_rate(self) -> RateLimit:
        if (self.rate is None) == (self.per_minute is None):
            raise ValueError("give exactly one of `rate` (per second) or `per_minute`")
        return self

    @property
    def per_second(self) -> float:
        return self.rate if self.rate is not None else (self.per_minute or 0.0) / 60.0


class PolicyFile(_Table):
    version: Literal[1] = 1
    classify: list[ClassifyRule] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    quotas: list[Quota] = Field(default_factory=list)
    rate_limits: list[RateLimit] = Field(default_factory=list)
