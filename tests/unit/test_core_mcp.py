"""MCP servers configured in settings join the core's registry, and the agent calls their tools."""

from __future__ import annotations

import sys
from pathlib import Path

from core import events as ev
from core.providers.scripted import tool_call
from tests.fixtures.cores import run_turn, scripted_core

DEMO = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_demo_server.py")


async def test_configured_mcp_tools_are_offered_and_called() -> None:
    servers = [
        {"name": "demo", "command": sys.executable, "args": [DEMO]},
        {"name": "broken", "command": "/nonexistent/mcp-server"},
    ]
    steps = [[tool_call("add", {"a": 2, "b": 3})], "2 + 3 = 5"]
    async with scripted_core(steps, overrides={"mcp_servers": servers}) as (core, provider):
        specs = {s.name: s for s in core.tool_specs()}
        assert specs["add"].source == "mcp:demo" and "read_file" in specs
        status = {s.name: s for s in core.mcp_status()}
        assert status["demo"].state == "connected" and status["broken"].state == "failed"
        assert "broken" in core.mcp_errors() and "command" in core.mcp_errors()["broken"].fix
        session = await core.new_session()
        events = await run_turn(core, session.id, "add 2 and 3")
        result = next(e for e in events if isinstance(e, ev.ToolCallFinished))
        assert result.ok and result.output.strip() == "5"
        assert "add" in provider.tools_seen[0]
    assert core.mcp_status() == []  # stopped with the core
