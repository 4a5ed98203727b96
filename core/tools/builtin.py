"""The built-in tools, in one place so the registry's contents are visible at a glance."""

from __future__ import annotations

from typing import Any

from core.timeline.db import Database
from core.tools.files import EditFileTool, ListDirTool, ReadFileTool, WriteFileTool
from core.tools.registry import Tool
from core.tools.shell import ShellTool
from core.tools.web_fetch import WebFetchTool


def builtin_tools(db: Database, memory: Any = None) -> list[Tool]:
    """`memory` (core.memory.service.Memory) adds remember/recall/forget; without it (memory.enabled = false)
    the plain full-text note tools stand in."""
    if memory is not None:
        from core.tools.memory_tools import ForgetTool, RecallTool, RememberTool

        notes: list[Tool] = [RememberTool(memory), RecallTool(memory), ForgetTool(memory)]
    else:
        from core.tools import notes as plain

        notes = [plain.RememberTool(db), plain.RecallTool(db)]
    return [
        ReadFileTool(),
        ListDirTool(),
        WriteFileTool(),
        EditFileTool(),
        ShellTool(),
        *notes,
        WebFetchTool(),
    ]
