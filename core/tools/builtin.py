"""The built-in tools, in one place so the registry's contents are visible at a glance."""

from __future__ import annotations

from typing import Any

from core.tools.files import EditFileTool, ListDirTool, ReadFileTool, WriteFileTool
from core.tools.registry import Tool
from core.tools.shell import ShellTool
from core.tools.web_fetch import WebFetchTool


def builtin_tools(memory: Any = None) -> list[Tool]:
    """`memory` (core.memory.service.Memory) adds remember/recall/forget; with memory.enabled = false there is
    no long-term memory, and no tools for it."""
    notes: list[Tool] = []
    if memory is not None:
        from core.tools.memory_tools import ForgetTool, RecallTool, RememberTool

        notes = [RememberTool(memory), RecallTool(memory), ForgetTool(memory)]
    return [ReadFileTool(), ListDirTool(), WriteFileTool(), EditFileTool(), ShellTool(), *notes, WebFetchTool()]
