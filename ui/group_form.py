"""What the Connect-to-group dialog typed, turned into `GroupSettings` or into a message per field.

Qt-free and kept apart from the bridge so the wording of every validation message lives in one place and can
be tested without widgets. Values arrive as a plain dict keyed by `GroupSettings` field names (brokers may be
one comma-separated string); the password is never a setting and is handled by the bridge.

Pydantic's own messages ("String should match pattern …") say nothing to a person, so the patterns the
settings model enforces are explained here in words; anything else falls back to pydantic's message.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from core import paths
from core.errors import ConfigError, UserError
from core.settings import GroupSettings

# The fields the dialog edits: everything else (client timings, retention, artifacts…) keeps its value.
FORM_FIELDS = (
    "name",
    "bootstrap_servers",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "agent_name",
    "description",
    "skills",
    "zone",
)
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SSL_PROTOCOLS = ("SSL", "SASL_SSL")

NAME_MESSAGE = "Use 1–63 letters, digits, - or _, starting with a letter or digit (it becomes part of topic names)."
SKILL_MESSAGE = "Skill names are 1–63 lowercase letters, digits, - or _, starting with a letter or digit."
BROKERS_MESSAGE = "Enter at least one broker as host:port, e.g. kafka.example.com:9092."


class InvalidGroupSettings(UserError):
    """Some fields are wrong; `problems` maps each field (`skills.0.name` for a skill row) to its message."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        text = "; ".join(f"{key}: {message}" for key, message in self.problems.items())
        super().__init__(f"Not connected: {text}", "Correct the fields marked in red.")


def parse_servers(value: Any) -> list[str]:
    """`"a:9092, b:9092"` or a list → the non-empty entries (commas, spaces and new lines all separate)."""
    items = value if isinstance(value, list | tuple) else re.split(r"[,\s]+", str(value or ""))
    return [str(item).strip() for item in items if str(item).strip()]


def _server_problem(servers: list[str]) -> str | None:
    from core.group.kafka_config import split_server  # the one parser every Kafka client uses

    if not servers:
        return BROKERS_MESSAGE
    for server in servers:
        try:
            split_server(server)
        except ConfigError:
            return f"{server!r} is not host:port. {BROKERS_MESSAGE}"
    return None


def _blank(row: dict[str, Any]) -> bool:
    return not str(row.get("name", "")).strip() and not str(row.get("description", "")).strip()


def _skills(rows: Any, base: GroupSettings) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Rows with a name or a description become skills (an empty row is ignored); a skill keeps the handler it
    had, so renaming nothing in the dialog never turns an `echo` skill into an `agent` one."""
    handlers = {skill.name: skill.handler for skill in base.skills}
    skills: list[dict[str, str]] = []
    problems: dict[str, str] = {}
    seen: set[str] = set()
    for index, row in enumerate(rows or []):
        if _blank(row):
            continue
        name = str(row.get("name", "")).strip()
        description = str(row.get("description", "")).strip()
        if not name:
            problems[f"skills.{index}.name"] = "Give the skill a name (or remove the row)."
        elif name in seen:
            problems[f"skills.{index}.name"] = f"There is already a skill called {name}."
        seen.add(name)
        skills.append({"name": name, "description": description, "handler": handlers.get(name, "agent")})
    return skills, problems


def _file_problems(settings: GroupSettings) -> dict[str, str]:
    if settings.security_protocol not in SSL_PROTOCOLS:
        return {}
    problems: dict[str, str] = {}
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, key)
        if value and not paths.expand(value).is_file():
            problems[key] = f"No file at {paths.expand(value)}."
    if settings.ssl_keyfile and not settings.ssl_certfile and "ssl_certfile" not in problems:
        problems["ssl_certfile"] = "A client key needs its certificate: choose it here, or clear the key."
    return problems


def _pydantic_problems(exc: ValidationError, row_of: list[int]) -> dict[str, str]:
    problems: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        if loc[:1] == ["skills"] and len(loc) >= 2 and loc[1].isdigit():
            loc[1] = str(row_of[int(loc[1])])  # the dialog's row, not the index among non-empty rows
        key = ".".join(loc)
        message = err["msg"]
        if err["type"] == "string_pattern_mismatch":
            message = SKILL_MESSAGE if loc[0] == "skills" else NAME_MESSAGE
        problems.setdefault(key, message)
    return problems


def check(values: dict[str, Any], base: GroupSettings) -> tuple[GroupSettings | None, dict[str, str]]:
    """The settings `values` describe on top of `base` (None when the settings model refuses them), and a message
    per wrong field: connect only when there is none."""
    update = {key: values[key] for key in FORM_FIELDS if key in values}
    for key, value in list(update.items()):
        if isinstance(value, str):
            update[key] = value.strip()
    problems: dict[str, str] = {}
    if "bootstrap_servers" in update:
        update["bootstrap_servers"] = parse_servers(update["bootstrap_servers"])
        if problem := _server_problem(update["bootstrap_servers"]):
            problems["bootstrap_servers"] = problem
    row_of: list[int] = []
    if "skills" in update:
        rows = update["skills"] or []
        row_of = [index for index, row in enumerate(rows) if not _blank(row)]
        update["skills"], skill_problems = _skills(rows, base)
        problems.update(skill_problems)
    merged = {**base.model_dump(), **update}
    settings: GroupSettings | None = None
    try:
        settings = GroupSettings(**merged)
    except ValidationError as exc:
        for key, message in _pydantic_problems(exc, row_of).items():
            problems.setdefault(key, message)
    shown = settings or GroupSettings.model_construct(**merged)  # so every wrong field is marked at once
    if shown.security_protocol in SASL_PROTOCOLS and not shown.sasl_username:
        problems["sasl_username"] = "Enter your Kafka user name: the cluster logs in with SASL."
    for key, message in _file_problems(shown).items():
        problems.setdefault(key, message)
    return settings, problems


def changed_values(new: GroupSettings, old: GroupSettings) -> dict[str, Any]:
    """Dotted config keys (`group.name`…) for the dialog's fields whose value differs from `old`."""
    out: dict[str, Any] = {}
    for key in FORM_FIELDS:
        value, before = getattr(new, key), getattr(old, key)
        if value != before:
            out[f"group.{key}"] = [s.model_dump() for s in value] if key == "skills" else value
    return out
