"""Reading policy.toml: TOML syntax and schema errors both become a ConfigError naming the file and line.

tomllib reports positions for syntax errors only, so for a schema error the loader finds the table itself:
the n-th `[[rules]]` header for `rules[n]` (quoted or spaced; never one inside a multi-line string), then the
key's line inside that table, or its `[rules.key]` sub-table's header (the table's header when the key is
missing). A missing default file means "no rules of your own": the built-in defaults apply.
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
    layout = _layout(text.splitlines())
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        line = _locate(layout, tuple(error["loc"]))
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{path}, line {line}: {_loc_text(error['loc'])}: {_message(error)}{more}.", FIX) from exc
    _check_names(policy, path, layout)
    starts = {(table, n): line for table, lines_ in layout.starts.items() for n, line in enumerate(lines_)}
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
#
# Not a TOML parser (tomllib has read the file by now): just enough to find where a table or a key starts.
# Lines inside multi-line strings and multi-line arrays or inline tables are never headers or keys; headers
# may quote or space their keys (`[[ "rules" ]]`); a dotted header (`[rules.extra]`) is a sub-table of the
# table above it.


@dataclass
class _Layout:
    lines: list[str]
    top: list[bool]  # per line: it starts outside any string, array or inline table
    starts: dict[str, list[int]]  # table -> 1-based lines of its `[[table]]` headers, in order
    subs: dict[tuple[str, int], dict[str, int]]  # (table, index) -> sub-table key -> the line of its header


_HEADER = re.compile(r"^\s*(\[\[?)(.*?)(\]\]?)\s*(#.*)?$")
_KEY_PART = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(\.|$)""")


def _dotted(text: str) -> list[str] | None:
    """The parts of a (possibly quoted) dotted key, or None if it is not one."""
    parts, at = [], 0
    while at < len(text):
        match = _KEY_PART.match(text, at)
        if match is None:
            return None
        parts.append(next(g for g in match.groups()[:3] if g is not None))
        at = match.end()
        if not match.group(4):
            break
    return parts if parts and at >= len(text) else None


def _top_lines(lines: list[str]) -> list[bool]:
    """For each line, whether it starts outside any string (multi-line ones included) and any bracket."""
    out, inside, depth = [], "", 0
    for line in lines:
        out.append(not inside and depth == 0)
        at = 0
        while at < len(line):
            if inside:  # a multi-line string: look for its end (a basic one's quotes may be escaped)
                end = line.find(inside, at)
                while end > 0 and inside == '"""' and (len(line[:end]) - len(line[:end].rstrip("\\"))) % 2:
                    end = line.find(inside, end + 1)
                if end < 0:
                    break
                at, inside = end + 3, ""
                while at < len(line) and line[at] == line[at - 1]:  # up to two quotes may end the content
                    at += 1
                continue
            char = line[at]
            if char == "#":
                break
            if line.startswith(('"""', "'''"), at):
                inside, at = line[at : at + 3], at + 3
            elif char in "\"'":
                at += 1
                while at < len(line) and line[at] != char:
                    at += 2 if char == '"' and line[at] == "\\" else 1
                at += 1
            else:
                depth += (char in "[{") - (char in "]}")
                at += 1
    return out


def _layout(lines: list[str]) -> _Layout:
    layout = _Layout(lines, _top_lines(lines), {}, {})
    current: tuple[str, int] | None = None
    for number, (line, top) in enumerate(zip(lines, layout.top, strict=True), start=1):
        match = _HEADER.match(line) if top else None
        if match is None or len(match.group(1)) != len(match.group(3)):
            continue
        parts = _dotted(match.group(2).strip()) or []
        if len(parts) == 1 and len(match.group(1)) == 2:  # [[table]]: its next entry
            found = layout.starts.setdefault(parts[0], [])
            found.append(number)
            current = (parts[0], len(found) - 1)
        elif len(parts) > 1 and current is not None and parts[0] == current[0]:  # [table.key]: in that entry
            layout.subs.setdefault(current, {}).setdefault(parts[1], number)
        else:
            current = None
    return layout


def _locate(layout: _Layout, loc: tuple[Any, ...]) -> int:
    """The line of `loc` (e.g. ('rules', 2, 'effect')): the key inside the n-th table, else the table's header."""
    if len(loc) >= 2 and loc[0] in TABLES and isinstance(loc[1], int):
        starts = layout.starts.get(str(loc[0]), [])
        if loc[1] < len(starts):
            start = starts[loc[1]]
            key = str(loc[2]) if len(loc) >= 3 else None
            sub = layout.subs.get((str(loc[0]), loc[1]), {}).get(key or "")
            return sub or _key_line(layout, start, key) or start
        return _key_line(layout, 1, str(loc[0]), top_level=True) or 1
    if loc:
        return _key_line(layout, 1, str(loc[0]), top_level=True) or 1
    return 1


def _key_line(layout: _Layout, start: int, key: str | None, *, top_level: bool = False) -> int | None:
    """The first `key = …` (or `key.sub = …`) line from `start` up to the next table header."""
    if key is None:
        return None
    quoted = re.escape(key)
    pattern = re.compile(rf"""^\s*(?:{quoted}|"{quoted}"|'{quoted}')\s*[=.]""")
    for number in range(start, len(layout.lines) + 1):
        line = layout.lines[number - 1]
        if not layout.top[number - 1]:
            continue
        header = line.lstrip().startswith("[")
        if header and (number > start or top_level):
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


def _check_names(policy: PolicyFile, path: Path, layout: _Layout) -> None:
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
                line = _locate(layout, (table, index, "name"))
                raise ConfigError(f"{path}, line {line}: {table}[{index + 1}].name: {problem}.", FIX)
