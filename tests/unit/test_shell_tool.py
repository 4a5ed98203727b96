"""The shell tool: one program, no shell syntax, confined to the workspace, and nothing left running."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.errors import SandboxViolation, ToolError
from core.settings import ToolSettings
from core.tools.registry import RiskTier, ToolContext, ToolOutput
from core.tools.shell import ShellTool, parse_command

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and programs")


@pytest.fixture
def ctx(workspace: Path) -> ToolContext:
    return ToolContext(workspace=workspace, session_id="s1", settings=ToolSettings(shell_timeout=10))


async def shell(ctx: ToolContext, command: str, **extra: Any) -> ToolOutput:
    args = {"command": command, **extra}
    jsonschema.Draft202012Validator(ShellTool.spec.parameters).validate(args)
    return await ShellTool().run(args, ctx)


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


REFUSED = [
    pytest.param("echo hi; touch pwned", "';'", id="semicolon"),
    pytest.param("true && touch pwned", "'&&'", id="and"),
    pytest.param("false || touch pwned", "'||'", id="or"),
    pytest.param("echo hi | tee pwned", "'|'", id="pipe"),
    pytest.param("touch pwned &", "'&'", id="background"),
    pytest.param("echo $(touch pwned)", "substitution", id="dollar-paren"),
    pytest.param('echo "$(touch pwned)"', "substitution", id="dollar-paren-in-double-quotes"),
    pytest.param("echo `touch pwned`", "backticks", id="backticks"),
    pytest.param("echo hi > pwned", "'>'", id="redirect-out"),
    pytest.param("echo hi>pwned", "'>'", id="redirect-out-no-space"),
    pytest.param("cat < /etc/passwd", "'<'", id="redirect-in"),
    pytest.param("echo hi >> pwned", "'>>'", id="redirect-append"),
    pytest.param("echo hi 2>&1", "'>'", id="redirect-fd"),
    pytest.param("echo hi\ntouch pwned", "line break", id="newline"),
    pytest.param("echo hi\rtouch pwned", "line break", id="carriage-return"),
    pytest.param("echo ${HOME}", "'${", id="parameter-expansion"),
    pytest.param("echo $HOME", "variable", id="variable"),
    pytest.param('echo "$HOME"', "variable", id="variable-in-double-quotes"),
    pytest.param("echo a\x00b", "NUL", id="nul"),
    pytest.param("", "empty", id="empty"),
    pytest.param("   ", "empty", id="blank"),
    pytest.param("(touch pwned)", "subshell", id="subshell"),
    pytest.param("ls *.py", "wildcard", id="glob-star"),
    pytest.param("ls file?.txt", "wildcard", id="glob-question"),
    pytest.param("ls [a-z].txt", "wildcard", id="glob-bracket"),
    pytest.param("cat ~/.ssh/id_rsa", "'~'", id="tilde"),
    pytest.param("echo hi # touch pwned", "comment", id="comment"),
    pytest.param("PATH=/tmp touch pwned", "assignment", id="env-assignment"),
    pytest.param("echo 'unbalanced", "parsed", id="unbalanced-quote"),
]


@pytest.mark.parametrize(("command", "reason"), REFUSED)
async def test_shell_tricks_are_refused_and_nothing_runs(
    ctx: ToolContext, workspace: Path, command: str, reason: str
) -> None:
    with pytest.raises(SandboxViolation) as info:
        await ShellTool().run({"command": command}, ctx)
    assert reason in info.value.message
    assert info.value.fix
    assert not (workspace / "pwned").exists()


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("grep 'a|b' notes.md", ["grep", "a|b", "notes.md"]),
        ("find . -name '*.py'", ["find", ".", "-name", "*.py"]),
        ("awk '{print $1}' data.csv", ["awk", "{print $1}", "data.csv"]),
        ('echo "a; b && c > d"', ["echo", "a; b && c > d"]),
        (r"echo a\;b", ["echo", "a;b"]),
        ("git commit -m 'fix: x=1'", ["git", "commit", "-m", "fix: x=1"]),
        ("echo a~b 50% x#y", ["echo", "a~b", "50%", "x#y"]),
    ],
)
def test_quoted_special_characters_are_plain_arguments(command: str, argv: list[str]) -> None:
    assert parse_command(command) == argv


def test_spec_and_approval_summary_show_the_exact_argv() -> None:
    tool = ShellTool()
    assert tool.spec.risk is RiskTier.HIGH
    assert tool.spec.parameters["additionalProperties"] is False
    assert tool.approval_summary({"command": "echo   'a b'  c"}) == "echo 'a b' c"
    assert "will be refused" in tool.approval_summary({"command": "echo hi; rm -rf ~"})


async def test_echo_runs_in_the_workspace(ctx: ToolContext) -> None:
    out = await shell(ctx, "echo hi")
    assert out.data["exit_code"] == 0
    assert out.data["stdout"] == "hi\n" and out.data["stderr"] == ""
    assert out.data["command"] == ["echo", "hi"]
    assert out.data["truncated"] is False and out.data["duration_ms"] >= 0
    assert out.text == "$ echo hi\nexit code: 0\n--- stdout ---\nhi"


async def test_cwd_home_and_environment_are_minimal(
    ctx: ToolContext, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_TEST_SECRET", "hunter2")
    assert (await shell(ctx, "pwd")).data["stdout"].strip() == os.path.realpath(workspace)
    env = (await shell(ctx, "env")).data["stdout"]
    assert f"HOME={os.path.realpath(workspace)}" in env.splitlines()
    assert "hunter2" not in env
    assert {line.split("=", 1)[0] for line in env.splitlines()} <= {"PATH", "HOME", "LANG", "TERM", "NO_COLOR", "PWD"}


async def test_stdin_is_empty(ctx: ToolContext) -> None:
    out = await shell(ctx, "cat")  # would hang forever if stdin were inherited
    assert out.data["exit_code"] == 0 and out.data["stdout"] == ""


async def test_non_zero_exit_codes_are_reported(ctx: ToolContext) -> None:
    out = await shell(ctx, "sh -c 'echo oops >&2; exit 3'")
    assert out.data["exit_code"] == 3
    assert out.data["stderr"] == "oops\n"
    assert "exit code: 3" in out.text and "--- stderr ---\noops" in out.text
    out = await shell(ctx, "ls does-not-exist")
    assert out.data["exit_code"] != 0 and "does-not-exist" in out.data["stderr"]


async def test_output_is_capped_and_marked(workspace: Path) -> None:
    ctx = ToolContext(workspace=workspace, session_id="s", settings=ToolSettings(shell_max_output=1024))
    out = await shell(ctx, "seq 1 2000")  # 8,893 bytes
    assert out.data["truncated"] is True
    assert len(out.data["stdout"].encode()) == 1024
    assert out.data["stdout"].startswith("1\n2\n3\n")
    assert "[output truncated: 7,869 more bytes were not kept]" in out.text
    assert out.data["exit_code"] == 0


async def test_a_timeout_kills_the_program_and_its_children(ctx: ToolContext, workspace: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"timed out after 0.5 s") as info:
        await shell(ctx, "sh -c 'sleep 30 & echo $! > child.pid; echo $$ > parent.pid; wait'", timeout=0.5)
    assert time.monotonic() - started < 5
    assert "timeout" in info.value.fix
    for name in ("child.pid", "parent.pid"):
        assert await wait_dead(int((workspace / name).read_text())), f"{name} still running"


async def test_the_timeout_is_capped_by_settings(workspace: Path) -> None:
    ctx = ToolContext(workspace=workspace, session_id="s", settings=ToolSettings(shell_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        await shell(ctx, "sleep 30", timeout=100)
    assert time.monotonic() - started < 5


async def test_children_left_behind_are_killed_without_waiting_for_the_timeout(ctx: ToolContext) -> None:
    started = time.monotonic()
    out = await shell(ctx, "sh -c 'sleep 30 & echo $!'")
    assert time.monotonic() - started < 5
    assert out.data["exit_code"] == 0
    assert await wait_dead(int(out.data["stdout"]))


async def test_cancellation_kills_the_process_group(ctx: ToolContext, workspace: Path) -> None:
    task = asyncio.create_task(shell(ctx, "sh -c 'echo $$ > parent.pid; exec sleep 30'"))
    pid_file = workspace / "parent.pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_dead(int(pid_file.read_text()))


async def test_unknown_programs_and_builtins_fail_clearly(ctx: ToolContext) -> None:
    with pytest.raises(ToolError, match="Command not found: no-such-program-xyz"):
        await shell(ctx, "no-such-program-xyz --help")
    with pytest.raises(ToolError, match="shell builtin"):
        await shell(ctx, "cd /")


@pytest.mark.skipif(not shutil.which("setsid"), reason="needs setsid(1)")
async def test_a_process_that_leaves_the_group_does_not_hang_the_call(ctx: ToolContext) -> None:
    started = time.monotonic()
    out = await shell(ctx, "sh -c 'setsid sleep 30 & echo $!'")
    try:
        assert time.monotonic() - started < 5  # a short grace period, not the 10 s timeout
        assert out.data["exit_code"] == 0
    finally:
        os.kill(int(out.data["stdout"]), signal.SIGKILL)  # out of our reach by design; clean up here
    gc.collect()  # the pipes it held must not leave an unclosed transport behind
