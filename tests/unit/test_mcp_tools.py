"""MCP servers as tools, against real stdio subprocesses (tests/fixtures/mcp_demo_server.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, ToolError
from core.settings import McpServerSettings
from core.tools.mcp import McpManager, McpServerConnection, McpTimeouts, _content_text, risk_from_annotations
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolRegistry, ToolSpec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "tests" / "fixtures" / "mcp_demo_server.py")


def demo(name: str = "demo", *extra: str) -> McpServerSettings:
    return McpServerSettings(name=name, command=sys.executable, args=[DEMO, *extra])


def alive(pid: int) -> bool:
    """True while the process exists (a reaped child is gone; our children are reaped by the SDK)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path, session_id="test")


async def server_pid(registry: ToolRegistry, ctx: ToolContext, tool: str = "pid") -> int:
    return int((await registry.get(tool).run({}, ctx)).text)


async def test_importing_shoal_does_not_import_mcp() -> None:
    code = "import sys, core.tools.mcp; assert 'mcp' not in sys.modules and 'anyio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_risk_tier_mapping() -> None:
    assert risk_from_annotations({"readOnlyHint": True}) is RiskTier.READ
    assert risk_from_annotations({"destructiveHint": False, "idempotentHint": True}) is RiskTier.WRITE
    assert risk_from_annotations({"destructiveHint": False}) is RiskTier.HIGH  # not idempotent: assume the worst
    assert risk_from_annotations({"destructiveHint": True, "idempotentHint": True}) is RiskTier.HIGH
    assert risk_from_annotations(None) is RiskTier.HIGH


def test_non_text_content_is_described() -> None:
    assert (
        _content_text({"type": "image", "mimeType": "image/png", "data": "AAAA"})
        == "[image image/png, 3 bytes, not shown]"
    )
    assert "file:///x" in _content_text({"type": "resource_link", "name": "x", "uri": "file:///x"})
    assert _content_text({"type": "resource", "resource": {"uri": "u", "text": "inline"}}) == "inline"


async def test_tools_are_registered_with_source_risk_and_schema(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo()], registry)
    await manager.start()
    try:
        assert manager.errors == {}
        assert {s.name for s in registry.specs()} == {"add", "shout", "pid", "sleep", "fail", "wipe"}
        assert {s.source for s in registry.specs()} == {"mcp:demo"}
        risks = {s.name: s.risk for s in registry.specs()}
        assert risks == {
            "add": RiskTier.WRITE,
            "shout": RiskTier.READ,
            "pid": RiskTier.READ,
            "sleep": RiskTier.READ,
            "fail": RiskTier.HIGH,
            "wipe": RiskTier.HIGH,
        }
        add = registry.get("add").spec
        assert add.description == "Add two integers."
        assert add.parameters["type"] == "object"
        assert add.parameters["required"] == ["a", "b"]
        assert add.parameters["properties"]["a"]["type"] == "integer"
        [status] = manager.status()
        assert (status.name, status.state, status.tool_count, status.error) == ("demo", "connected", 6, None)
    finally:
        await manager.stop()


async def test_calls_return_text_and_errors_raise_tool_error(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo()], registry)
    await manager.start()
    try:
        out = await registry.get("add").run({"a": 2, "b": 3}, ctx)
        assert out.text == "5"
        assert out.data["structured"] == {"result": 5}
        assert (await registry.get("shout").run({"text": "hi"}, ctx)).text == "HI"
        with pytest.raises(ToolError, match="the demo tool failed on purpose"):
            await registry.get("fail").run({}, ctx)
        with pytest.raises(ToolError, match="addArguments"):  # the server validates arguments too
            await registry.get("add").run({"a": "x"}, ctx)
        # concurrent calls from other tasks share the one session
        outs = await asyncio.gather(*(registry.get("add").run({"a": i, "b": i}, ctx) for i in range(5)))
        assert [o.text for o in outs] == ["0", "2", "4", "6", "8"]
        assert "shout" in registry.get("shout").approval_summary({"text": "hi"})
    finally:
        await manager.stop()


async def test_a_broken_server_does_not_stop_the_others(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    missing = McpServerSettings(name="broken", command="/nonexistent/shoal-mcp-server")
    crashing = McpServerSettings(
        name="crashy", command=sys.executable, args=["-c", "import sys; sys.exit('boom: MCP_TOKEN is not set')"]
    )
    manager = McpManager([missing, demo(), crashing], registry)
    await manager.start()
    try:
        assert set(manager.errors) == {"broken", "crashy"}
        broken = manager.errors["broken"]
        assert isinstance(broken, ConfigError)
        assert "'broken' could not start: command '/nonexistent/shoal-mcp-server' not found" in broken.message
        assert "mcp_servers[name='broken'].command" in broken.fix
        assert "boom: MCP_TOKEN is not set" in manager.errors["crashy"].message  # the server's stderr, quoted
        assert {s.source for s in registry.specs()} == {"mcp:demo"}
        assert (await registry.get("add").run({"a": 2, "b": 3}, ctx)).text == "5"
        states = {s.name: (s.state, s.tool_count, s.error) for s in manager.status()}
        assert states["broken"] == ("failed", 0, broken)
        assert states["demo"] == ("connected", 6, None)
    finally:
        await manager.stop()


async def test_stop_is_bounded_idempotent_and_leaves_nothing_behind(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo()], registry)
    await manager.start()
    pid = await server_pid(registry, ctx)
    assert alive(pid)
    started = time.monotonic()
    await manager.stop()
    assert time.monotonic() - started < 5
    assert not alive(pid)
    assert len(registry) == 0
    await manager.stop()  # again: nothing to do, no error
    assert [s.state for s in manager.status()] == ["stopped"]
    with pytest.raises(ToolError, match="not connected"):
        await manager.connections["demo"].call("add", {"a": 1, "b": 1})


async def test_start_twice_spawns_once(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo()], registry)
    await manager.start()
    try:
        pid = await server_pid(registry, ctx)
        conn = manager.connections["demo"]
        await asyncio.gather(manager.start(), conn.start(), conn.start())
        assert await server_pid(registry, ctx) == pid
        assert len(registry) == 6
    finally:
        await manager.stop()
    await manager.start()  # a stopped manager can start again, with a fresh process
    try:
        assert await server_pid(registry, ctx) != pid
    finally:
        await manager.stop()


async def test_stop_does_not_hang_on_a_server_that_ignores_stdin_closing(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo("demo", "--stubborn")], registry)
    await manager.start()
    pid = await server_pid(registry, ctx)
    started = time.monotonic()
    await manager.stop()  # the SDK closes stdin, waits 2 s, SIGTERMs (ignored), waits 2 s, SIGKILLs
    assert time.monotonic() - started < 8
    assert not alive(pid)


async def test_a_server_that_never_answers_times_out() -> None:
    silent = McpServerSettings(name="silent", command=sys.executable, args=["-c", "import time; time.sleep(60)"])
    conn = McpServerConnection(silent, McpTimeouts(start=0.5, stop=8))
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not finish starting within"):
        await conn.start()
    assert time.monotonic() - started < 8
    assert conn.state == "failed"
    await conn.stop()
    assert conn.state == "failed"


async def test_a_server_that_dies_mid_session_fails_calls_cleanly(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo()], registry)
    await manager.start()
    try:
        os.kill(await server_pid(registry, ctx), signal.SIGKILL)
        with pytest.raises(ToolError, match="'demo'"):
            async with asyncio.timeout(10):
                await registry.get("add").run({"a": 1, "b": 1}, ctx)
    finally:
        await manager.stop()


async def test_stopping_during_a_call_fails_the_call_instead_of_hanging(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo()], registry)
    await manager.start()
    pid = await server_pid(registry, ctx)
    slow = asyncio.create_task(registry.get("sleep").run({"seconds": 30}, ctx))
    await asyncio.sleep(0.5)  # let the request reach the server
    started = time.monotonic()
    await manager.stop()
    with pytest.raises(ToolError, match="'demo'"):
        async with asyncio.timeout(10):
            await slow
    assert time.monotonic() - started < 8
    assert not alive(pid)


async def test_a_slow_call_times_out_and_the_server_stays_usable(ctx: ToolContext) -> None:
    registry = ToolRegistry()
    manager = McpManager([demo()], registry, McpTimeouts(call=0.5))
    await manager.start()
    try:
        with pytest.raises(ToolError, match=r"did not answer within 0\.5 s"):
            await registry.get("sleep").run({"seconds": 3}, ctx)
        assert (await registry.get("add").run({"a": 2, "b": 3}, ctx)).text == "5"
    finally:
        await manager.stop()


class _Builtin(Tool):
    spec = ToolSpec(name="add", description="built-in add", parameters={"type": "object"}, risk=RiskTier.READ)

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return ToolOutput("builtin")


async def test_name_clashes_are_prefixed_with_the_server_name(ctx: ToolContext) -> None:
    registry = ToolRegistry([_Builtin()])
    manager = McpManager([demo("one"), demo("two"), demo("one")], registry)
    await manager.start()
    try:
        assert "Two MCP servers are named 'one'" in manager.errors["one"].message
        names = {s.name for s in registry.specs() if s.source == "mcp:one"}
        assert names == {"one__add", "one__shout", "one__pid", "one__sleep", "one__fail", "one__wipe"}
        assert registry.get("add").spec.source == "builtin"
        assert (await registry.get("two__add").run({"a": 2, "b": 3}, ctx)).text == "5"
    finally:
        await manager.stop()
    assert [t.spec.name for t in registry.all()] == ["add"]


async def test_disabled_servers_are_not_started() -> None:
    registry = ToolRegistry()
    off = demo("off").model_copy(update={"enabled": False})
    manager = McpManager([off], registry)
    await manager.start()
    assert manager.connections == {} and len(registry) == 0
    assert [(s.name, s.state) for s in manager.status()] == [("off", "disabled")]
    await manager.stop()
