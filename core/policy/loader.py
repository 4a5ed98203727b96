"""Reading policy.toml: TOML syntax and schema errors both become a ConfigError naming the file and line.

tomllib reports positions for syntax errors only, so for a schema error the loader finds the table itself:
the n-th `[[rules]]` header for `rules[n]`, then the key's line inside that table (the header's line when the
key is missing). A missing default file means "no rules of your own": the built-in defaults apply.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core import paths
from core.errors import ConfigError
from core.policy.engine import PolicyEngine
from core.policy.labels import parse_label
from core.policy.schema import PolicyFile
from core.settings import Settings

POLICY_FILENAME = "policy.toml"
TABLES = ("classify", "rules", "quotas", "rate_limits")
FIX = "Fix that line (docs/policy.md has the schema), then check the file with `shoal policy validate`."


@dataclass(frozen=True)
class LoadedPolicy:
    policy: PolicyFile
    file: Path | None
    lines: dict[tuple[str, int], int]  # (table, index) -> line of its [[table]] header


def policy_path(settings: Settings, config_file: Path | None = None) -> Path:
    """`policy.file`, else policy.toml beside the config file in use."""
    if settings.policy.file:
        return paths.expand(settings.policy.file)
    return (config_file or paths.config_file()).parent / POLICY_FILENAME


def read_policy(path: Path, *, required: bool = True) -> LoadedPolicy:
    """Parse and validate one file. `required=False`: a missing file is an empty policy."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not required:
            return LoadedPolicy(PolicyFile(), None, {})
        raise ConfigError(f"The policy file {path} does not exist.", "Create it with `shoal policy init`, or "
                          "clear policy.file to use the default.") from None  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"Cannot read the policy file {path}: {exc.strerror}", "Check its permissions.") from exc
    return parse_policy(text, path)


def parse_policy(text: str, path: Path) -> LoadedPolicy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        where = f"{path}, line {found.group(1)}" if found else str(path)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{where}: not valid TOML: {message}.", FIX) from exc
    lines = text.splitlines()
    headers = _headers(lines)
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        line = _locate(lines, headers, tuple(error["loc"]))
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{path}, line {line}: {_loc_text(error['loc'])}: {_message(error)}{more}.", FIX) from exc
    _check_names(policy, path, lines, headers)
    starts = {(table, n): line for table, lines_ in headers.items() for n, line in enumerate(lines_)}
    return LoadedPolicy(policy, path, starts)


def load_policy(
    settings: Settings,
    *,
    config_file: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PolicyEngine:
    """The engine for these settings: the file's rules (if policy.enabled) and the built-in defaults."""
    section = settings.policy
    loaded = LoadedPolicy(PolicyFile(), None, {})
    if section.enabled:
        path = policy_path(settings, config_file)
        loaded = read_policy(path, required=bool(section.file))
    return PolicyEngine.from_policy(
        loaded.policy,
        lines=loaded.lines,
        file=loaded.file,
        default_label=parse_label(section.default_label),
        auto_approve=settings.tools.auto_approve,
        enabled=section.enabled,
        clock=clock,
    )


# --- where things are in the text ---------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z_]+)\s*\]\]\s*(#.*)?$")
_TABLE = re.compile(r"^\s*\[")


def _headers(lines: list[str]) -> dict[str, list[int]]:
    """1-based line numbers of each `[[table]]` header, in order."""
    found: dict[str, list[int]] = {}
    for number, line in enumerate(lines, start=1):
        match = _HEADER.match(line)
        if match:
            found.setdefault(match.group(1), []).append(number)
    return found


def _locate(lines: list[str], headers: dict[str, list[int]], loc: tuple[Any, ...]) -> int:
    """The line of `loc` (e.g. ('rules', 2, 'effect')): the key inside the n-th table, else the table's header."""
    if len(loc) >= 2 and loc[0] in TABLES and isinstance(loc[1], int):
        starts = headers.get(str(loc[0]), [])
        if loc[1] < len(starts):
            start = starts[loc[1]]
            key = str(loc[2]) if len(loc) >= 3 else None
            return _key_line(lines, start, key) or start
        return _key_line(lines, 1, str(loc[0])) or 1
    if loc:
        return _key_line(lines, 1, str(loc[0]), top_level=True) or 1
    return 1


def _key_line(lines: list[str], start: int, key: str | None, *, top_level: bool = False) -> int | None:
    """The first `key = …` line from `start` up to the next table header."""
    if key is None:
        return None
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number in range(start, len(lines) + 1):
        line = lines[number - 1]
        if number > start and _TABLE.match(line):
            return None
        if top_level and _TABLE.match(line):
            return None
        if pattern.match(line):
            return number
    return None


def _loc_text(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"  # 1-based, as a person counts tables
        else:
            out += f".{part}" if out else str(part)
    return out or "the file"


def _message(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key (see docs/policy.md for the keys each table takes)"
    if error["type"] == "literal_error" and "input" in error:
        return f"{message} (got {error['input']!r})"
    return message


def _check_names(policy: PolicyFile, path: Path, lines: list[str], headers: dict[str, list[int]]) -> None:
    """Names identify rules in decisions and usage: unique per table, and `builtin:` is reserved."""
    for table in TABLES:
        seen: set[str] = set()
        for index, item in enumerate(getattr(policy, table)):
            problem = ""
            if item.name.startswith("builtin:"):
                problem = f"the name {item.name!r} is reserved for built-in rules"
            elif item.name in seen:
                problem = f"another [[{table}]] table is already named {item.name!r}; names must be unique"
            seen.add(item.name)
            if problem:
                line = _locate(lines, headers, (table, index, "name"))
                raise ConfigError(f"{path}, line {line}: {table}[{index + 1}].name: {problem}.", FIX)
