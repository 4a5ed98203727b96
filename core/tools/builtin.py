"""The built-in tools, in one place so the registry's contents are visible at a glance."""

from __future__ import annotations

from core.timeline.db import Database
from core.tools.files import EditFileTool, ListDirTool, ReadFileTool, WriteFileTool
from core.tools.notes import RecallTool, RememberTool
from core.tools.registry import Tool
from core.tools.shell import ShellTool
from core.tools.web_fetch import WebFetchTool


def builtin_tools(db: Database) -> list[Tool]:
    return [
        ReadFileTool(),
        ListDirTool(),
        WriteFileTool(),
        EditFileTool(),
        ShellTool(),
        RememberTool(db),
        RecallTool(db),
        WebFetchTool(),
    ]
