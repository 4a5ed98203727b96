"""File tools confined to the workspace: read, list, write and edit text files.

Every path goes through `Workspace.resolve`, so none of these tools can reach outside the workspace.
Writes are atomic (a temporary file in the same folder, fsynced, then `os.replace`), so a crash or a
full disk leaves either the old file or the new one, never half of each. Writers refuse a final
component that is a symbolic link: the person approving "write notes.md" should get exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from core.errors import SandboxViolation, ToolError
from core.settings import ToolSettings
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolSpec
from core.tools.sandbox import Workspace

MAX_LIST_ENTRIES = 500
_PATH_PROP = {"type": "string", "minLength": 1, "description": "path relative to the workspace, e.g. notes/todo.md"}


def _settings(ctx: ToolContext) -> ToolSettings:
    return ctx.settings if ctx.settings is not None else ToolSettings()


def _os_error(action: str, shown: str, exc: OSError) -> ToolError:
    """Turn an OSError into a sentence about the path the model named, not our resolved path."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        return ToolError(f"No such file or folder: {shown}", "Check the name with list_dir.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ToolError(f"Permission denied while trying to {action} {shown}.", "Check the file's permissions.")
    return ToolError(f"Could not {action} {shown}: {reason}", "Check the path and try again.")


def _read_text(path: Path, shown: str, max_bytes: int) -> str:
    """Read a regular UTF-8 text file of at most `max_bytes`; refuse everything else clearly.

    O_NOFOLLOW keeps a link swapped in after the sandbox check from being followed, and O_NONBLOCK
    keeps a named pipe from hanging the open before fstat can refuse it.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SandboxViolation(
                f"{shown} is a symbolic link that cannot be followed safely (a loop, or it changed during the check).",
                "Read the file the link points to by its own path.",
            ) from exc
        raise _os_error("read", shown, exc) from exc
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{shown} is a folder, not a file.", "Use list_dir to see what it contains.")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{shown} is not a regular file (a device, pipe or socket).", "Only files can be read.")
        data = _read_at_most(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ToolError(
            f"{shown} is {max(info.st_size, len(data)):,} bytes; the limit is {max_bytes:,} (tools.read_max_bytes).",
            "Read a smaller file, or use the shell tool (head, grep) to look at part of it.",
        )
    if b"\x00" in data:
        raise ToolError(f"{shown} looks like a binary file.", "Only text files can be read; try the shell tool.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"{shown} is not UTF-8 text (byte {exc.start}).", "Convert it to UTF-8 first.") from exc


def _read_at_most(fd: int, limit: int) -> bytes:
    """Read until end of file or `limit` bytes, whichever comes first."""
    chunks, size = [], 0
    while size < limit and (chunk := os.read(fd, min(1 << 20, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to `target` so readers see the old file or the new one, never a partial one.

    The temporary file lives in the target's folder (same file system, so os.replace is atomic) and
    is removed on any failure. An existing file's permission bits are kept.
    """
    try:
        mode: int | None = stat.S_IMODE(os.lstat(target).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = target.with_name(f".{target.name[:100]}.{secrets.token_hex(6)}.shoal-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable where the platform allows; best effort by design."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _writable_target(ws: Workspace, user_path: str) -> Path:
    """Resolve a path for writing: inside the workspace, not a link, not a folder."""
    if os.path.islink(ws.join(user_path)):
        raise SandboxViolation(
            f"{user_path} is a symbolic link; refusing to write through it.",
            "Write to the file the link points to by its own path, or remove the link first.",
        )
    target = ws.resolve(user_path)
    if target == ws.root or target.is_dir():
        raise ToolError(f"{user_path} is a folder, not a file.", "Give the path of a file inside it.")
    return target


class _FileTool(Tool):
    """File work blocks on the disk: it runs in a worker thread, never on the event loop."""

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return await asyncio.to_thread(self._run, args, ctx)

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        raise NotImplementedError


class ReadFileTool(_FileTool):
    spec = ToolSpec(
        name="read_file",
        description="Read a UTF-8 text file from the workspace, optionally only some lines.",
        parameters={
            "type": "object",
            "properties": {
                "path": _PATH_PROP,
                "offset": {"type": "integer", "minimum": 1, "description": "first line to return (1-based)"},
                "limit": {"type": "integer", "minimum": 1, "description": "how many lines to return"},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
        risk=RiskTier.READ,
    )

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        ws, shown = Workspace(ctx.workspace), args["path"]
        target = ws.resolve(shown, must_exist=True)
        text = _read_text(target, shown, _settings(ctx).read_max_bytes)
        lines = text.splitlines(keepends=True)
        offset, limit = int(args.get("offset") or 1), args.get("limit")
        if offset > max(len(lines), 1):
            raise ToolError(
                f"offset {offset} is past the end: {shown} has {len(lines)} lines.", "Use a smaller offset."
            )
        end = len(lines) if limit is None else min(len(lines), offset - 1 + int(limit))
        body = "".join(lines[offset - 1 : end])
        partial = offset > 1 or end < len(lines)
        out = body if body else "(empty file)"
        if partial:
            more = f"; call read_file with offset={end + 1} to continue" if end < len(lines) else ""
            out = f"{body.rstrip(chr(10))}\n[lines {offset}-{end} of {len(lines)}{more}]"
        data = {"path": ws.relative(target), "bytes": len(text.encode()), "lines": len(lines)}
        return ToolOutput(out, {**data, "offset": offset, "end": end, "partial": partial})


class ListDirTool(_FileTool):
    spec = ToolSpec(
        name="list_dir",
        description=f"List a workspace folder: each entry's name, type and size (at most {MAX_LIST_ENTRIES}).",
        parameters={
            "type": "object",
            "properties": {"path": {**_PATH_PROP, "description": "folder relative to the workspace; default '.'"}},
            "required": [],
            "additionalProperties": False,
        },
        risk=RiskTier.READ,
    )

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        ws, shown = Workspace(ctx.workspace), args.get("path") or "."
        folder = ws.resolve(shown, must_exist=True)
        if not folder.is_dir():
            raise ToolError(f"{shown} is a file, not a folder.", "Use read_file to read it.")
        try:
            with os.scandir(folder) as it:
                entries = sorted((_describe(e) for e in it), key=lambda e: e["name"])
        except OSError as exc:
            raise _os_error("list", shown, exc) from exc
        kept = entries[:MAX_LIST_ENTRIES]
        lines = [f"{ws.relative(folder)}: {len(entries)} entries"] + [_format(e) for e in kept]
        if not entries:
            lines.append("(empty)")
        if len(entries) > len(kept):
            lines.append(f"[showing the first {len(kept)} of {len(entries)} entries]")
        data = {"path": ws.relative(folder), "entries": kept, "total": len(entries)}
        return ToolOutput("\n".join(lines), {**data, "truncated": len(entries) > len(kept)})


def _describe(entry: os.DirEntry[str]) -> dict[str, Any]:
    """One entry without following links, so a link out of the workspace reveals nothing behind it."""
    if entry.is_symlink():
        return {"name": entry.name, "type": "symlink", "size": None}
    if entry.is_dir(follow_symlinks=False):
        return {"name": entry.name, "type": "dir", "size": None}
    if entry.is_file(follow_symlinks=False):
        try:
            size: int | None = entry.stat(follow_symlinks=False).st_size
        except OSError:
            size = None
        return {"name": entry.name, "type": "file", "size": size}
    return {"name": entry.name, "type": "other", "size": None}


def _format(entry: dict[str, Any]) -> str:
    if entry["type"] == "dir":
        return f"  {entry['name']}/"
    if entry["type"] == "file":
        return f"  {entry['name']}  ({entry['size']:,} bytes)" if entry["size"] is not None else f"  {entry['name']}"
    return f"  {entry['name']}  ({entry['type']})"


class WriteFileTool(_FileTool):
    spec = ToolSpec(
        name="write_file",
        description="Create or replace a text file in the workspace (parent folders are created).",
        parameters={
            "type": "object",
            "properties": {"path": _PATH_PROP, "content": {"type": "string", "description": "the whole new content"}},
            "required": ["path", "content"],
            "additionalProperties": False,
        },
        risk=RiskTier.WRITE,
    )

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        ws, shown = Workspace(ctx.workspace), args["path"]
        ws.ensure_exists()
        target = _writable_target(ws, shown)
        data = args["content"].encode("utf-8")
        created = not os.path.lexists(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # The folders just made must not have let the path wander (a racing link): check again.
            target = _writable_target(ws, shown)
            _atomic_write(target, data)
        except OSError as exc:
            raise _os_error("write", shown, exc) from exc
        verb = "Created" if created else "Replaced"
        return ToolOutput(
            f"{verb} {ws.relative(target)} ({len(data):,} bytes).",
            {"path": ws.relative(target), "bytes": len(data), "created": created},
        )


class EditFileTool(_FileTool):
    spec = ToolSpec(
        name="edit_file",
        description=(
            "Replace exact text in a workspace file. old_text must match exactly once "
            "(including whitespace), unless replace_all is true."
        ),
        parameters={
            "type": "object",
            "properties": {
                "path": _PATH_PROP,
                "old_text": {"type": "string", "minLength": 1, "description": "exact text to find"},
                "new_text": {"type": "string", "description": "text to put in its place"},
                "replace_all": {"type": "boolean", "description": "replace every occurrence (default false)"},
            },
            "required": ["path", "old_text", "new_text"],
            "additionalProperties": False,
        },
        risk=RiskTier.WRITE,
    )

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        ws, shown = Workspace(ctx.workspace), args["path"]
        old, new, replace_all = args["old_text"], args["new_text"], bool(args.get("replace_all", False))
        if not old:
            raise ToolError("old_text is empty.", "Pass the exact text to replace.")
        if old == new:
            raise ToolError("old_text and new_text are the same; nothing would change.", "Pass the new text.")
        target = _writable_target(ws, shown)
        text = _read_text(target, shown, _settings(ctx).read_max_bytes)
        old, new = _match_line_endings(text, old, new)
        count = text.count(old)
        if count == 0:
            raise ToolError(
                f"old_text was not found in {shown}.",
                "Read the file and copy the exact text, including indentation and line breaks.",
            )
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_text occurs {count} times in {shown}; it must be unique.",
                "Include more surrounding lines to pick one, or set replace_all to true.",
            )
        updated = text.replace(old, new) if replace_all else text.replace(old, new, 1)
        try:
            _atomic_write(target, updated.encode("utf-8"))
        except OSError as exc:
            raise _os_error("write", shown, exc) from exc
        replaced = count if replace_all else 1
        return ToolOutput(
            f"Edited {ws.relative(target)}: replaced {replaced} occurrence{'s' if replaced > 1 else ''}.",
            {"path": ws.relative(target), "replacements": replaced, "bytes": len(updated.encode("utf-8"))},
        )


def _match_line_endings(text: str, old: str, new: str) -> tuple[str, str]:
    """Models write '\\n'; a CRLF file would never match. Adopt the file's line endings when needed."""
    if old in text or "\r\n" not in text or "\n" not in old or "\r\n" in old:
        return old, new
    return old.replace("\n", "\r\n"), new.replace("\r\n", "\n").replace("\n", "\r\n")
