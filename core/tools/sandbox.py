"""Confine every path a tool touches to one workspace folder.

The model writes paths as text, so the text is checked before the file system is asked anything:
a path must be relative, plain (no `~`, drive letters, UNC prefixes, backslashes, control
characters) and short. It is then joined to the resolved workspace root and resolved with
`os.path.realpath`, which follows symbolic links the way the kernel does (including dangling ones,
whose target is resolved as far as it exists), and the result must still lie inside the root.

Residual risk, documented rather than hidden: the check and the later open are separate system
calls, so a process that can already create symbolic links inside the workspace could swap one in
between them. Shoal's own tools cannot (the shell tool needs approval), and the file tools open
with `O_NOFOLLOW` so the final component at least cannot be swapped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import SandboxViolation, ToolError

MAX_PATH_CHARS = 1024
MAX_COMPONENT_CHARS = 255

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x01-\x1f\x7f]")
_RELATIVE_FIX = "Use a path relative to the workspace, with forward slashes, e.g. notes/todo.md ('.' is the workspace)."


class Workspace:
    """The folder file and shell tools may use; `resolve` turns model-written paths into safe ones."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # Resolve once, so a workspace that is itself reached through a symlink (e.g. /tmp on macOS)
        # still compares equal to the resolved paths inside it.
        self.root = Path(os.path.realpath(os.fspath(root)))

    def ensure_exists(self) -> None:
        """Create the workspace folder on first use; tools that write or run programs need it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ToolError(
                f"Cannot create the workspace folder {self.root}: {exc.strerror}",
                "Create it yourself or point tools.workspace at a writable folder.",
            ) from exc

    def join(self, user_path: str) -> Path:
        """Check the text of `user_path` and join it to the root, without following any link.

        Writers use this to see whether the final component is itself a symbolic link.
        """
        parts = _checked_parts(user_path)
        return self.root.joinpath(*parts)

    def resolve(self, user_path: str, *, must_exist: bool = False) -> Path:
        """The real path `user_path` names, guaranteed to be inside the workspace.

        Raises SandboxViolation when the path escapes (by its text or through a symbolic link) and
        ToolError when `must_exist` is set and nothing is there.
        """
        lexical = self.join(user_path)
        real = Path(os.path.realpath(lexical))
        if not real.is_relative_to(self.root):
            raise self._escape_error(user_path, lexical)
        if must_exist and not os.path.lexists(real):
            raise ToolError(f"No such file or folder: {user_path}", "Check the name with list_dir.")
        return real

    def relative(self, path: str | os.PathLike[str]) -> str:
        """How to show `path` to people and the model: relative to the root, '.' for the root itself."""
        candidate = Path(path)
        if not candidate.is_absolute():
            return candidate.as_posix() or "."
        try:
            return candidate.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(candidate)

    def _escape_error(self, user_path: str, lexical: Path) -> SandboxViolation:
        """Name the symbolic link that leads out, so the person knows what to remove."""
        link = self._first_escaping_link(lexical)
        if link is None:
            return SandboxViolation(f"The path {user_path!r} resolves outside the workspace.", _RELATIVE_FIX)
        name, target = link
        return SandboxViolation(
            f"The path {user_path!r} goes through the symbolic link {name!r}, which points outside the workspace "
            f"(to {target}).",
            "Use files inside the workspace; copy the file in, or remove the link.",
        )

    def _first_escaping_link(self, lexical: Path) -> tuple[str, str] | None:
        """Walk the path one component at a time, the way realpath does, until a link leaves the root."""
        current = self.root
        for part in lexical.relative_to(self.root).parts:
            if part == "..":
                current = current.parent
                continue
            step = current / part
            if os.path.islink(step):
                target = Path(os.path.realpath(step))
                if not target.is_relative_to(self.root):
                    return self.relative(step), str(target)
                current = target
            else:
                current = step
        return None


def _checked_parts(user_path: str) -> list[str]:
    """Refuse path text that is not a plain relative path; return its components ('.' dropped)."""
    _check_text(user_path)
    parts = [p for p in user_path.split("/") if p not in ("", ".")]
    depth = 0
    for part in parts:
        if len(part) > MAX_COMPONENT_CHARS:
            raise SandboxViolation(
                f"A path component is {len(part)} characters long; the limit is {MAX_COMPONENT_CHARS}.",
                "Use shorter file and folder names.",
            )
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise SandboxViolation(f"The path {user_path!r} uses '..' to leave the workspace.", _RELATIVE_FIX)
    return parts


def _check_text(user_path: object) -> None:
    """Refuse what no plain relative path contains; each message names the reason."""
    if not isinstance(user_path, str):
        raise SandboxViolation(f"A path must be a string, not {type(user_path).__name__}.", _RELATIVE_FIX)
    if not user_path.strip():
        raise SandboxViolation("The path is empty.", _RELATIVE_FIX)
    if "\x00" in user_path:
        raise SandboxViolation("The path contains a NUL byte.", "Remove the NUL character from the path.")
    if len(user_path) > MAX_PATH_CHARS:
        raise SandboxViolation(
            f"The path is {len(user_path)} characters long; the limit is {MAX_PATH_CHARS}.", "Use a shorter path."
        )
    if _CONTROL.search(user_path):
        raise SandboxViolation(f"The path {user_path!r} contains control characters.", "Remove them from the path.")
    if user_path.startswith(("\\\\", "//")):
        raise SandboxViolation(f"Network (UNC) paths are not allowed: {user_path!r}.", _RELATIVE_FIX)
    if _DRIVE.match(user_path):
        raise SandboxViolation(f"Windows drive paths are not allowed: {user_path!r}.", _RELATIVE_FIX)
    if "\\" in user_path:
        raise SandboxViolation(f"Backslashes are not allowed in paths: {user_path!r}.", _RELATIVE_FIX)
    if user_path.startswith("/"):
        raise SandboxViolation(f"Absolute paths are not allowed: {user_path!r}.", _RELATIVE_FIX)
    if user_path.startswith("~"):
        raise SandboxViolation(
            f"'~' is not expanded and home folders are outside the workspace: {user_path!r}.", _RELATIVE_FIX
        )
