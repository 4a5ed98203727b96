"""`shell`: run one program in the workspace, with no shell in between.

The command line is split with `shlex` (POSIX rules) and run with `create_subprocess_exec`, so no
shell ever interprets it. Anything that only a shell would give meaning to is refused instead of
being passed on literally, because the person approving the call would otherwise read it one way
and the program would receive it another:

* anywhere, even inside quotes: NUL, newlines, `$(`, `${` and backticks (double quotes do not stop
  substitution in a real shell, so the intent is clearly substitution);
* outside quotes: `;`, `&`, `&&`, `|`, `||`, `<`, `>`, `>>`, `(`, `)`, variables (`$HOME`, `$1`),
  a leading `~` or `#`, and glob characters `*`, `?`, `[`. Globs are refused rather than passed on
  literally: `ls *.py` would otherwise fail confusingly. Quoted, they are plain arguments, so
  `find . -name '*.py'` and `grep 'a|b' notes.md` work.

This is not a sandbox for the program itself: `sh -c '...'` or `python -c` can do anything the
user can. That is why the tool is RiskTier.HIGH and the executor asks a person first, showing
`approval_summary` — the exact argv, re-quoted with `shlex.join`.

The program gets a minimal environment (PATH, HOME=workspace, LANG, TERM=dumb, NO_COLOR=1), no
stdin, and its own process group (session) so that a timeout or a cancellation kills it and every
child it started. On Windows, which has no process groups, only the program itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from core.errors import SandboxViolation, ToolError
from core.settings import ToolSettings
from core.tools.registry import RiskTier, Tool, ToolContext, ToolOutput, ToolSpec
from core.tools.sandbox import Workspace

_ANYWHERE = {"$(": "command substitution '$(...)'", "${": "parameter expansion '${...}'", "`": "backticks"}
_OPERATORS = {
    "&&": "'&&'",
    "||": "'||'",
    ">>": "'>>' (append redirection)",
    ";": "';' (command separator)",
    "&": "'&' (background job)",
    "|": "'|' (pipe)",
    "<": "'<' (input redirection)",
    ">": "'>' (output redirection)",
    "(": "'(' (subshell)",
    ")": "')' (subshell)",
}
_GLOBS = "*?["
_VARIABLE = re.compile(r"\$[A-Za-z_0-9@*#?$!-]")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*=")
_BUILTINS = {"cd", "export", "source", ".", "alias", "set", "unset", "exit", "eval", "exec", "pushd", "popd", "ulimit"}
_NO_SHELL_FIX = "There is no shell: run one program with plain arguments, and quote special characters."
_POLL_SECONDS = 0.1
_GRACE_SECONDS = 2.0


def parse_command(command: object) -> list[str]:
    """Check `command` for shell syntax and split it into argv; raise SandboxViolation on any trick."""
    if not isinstance(command, str) or not command.strip():
        raise SandboxViolation("The command is empty.", "Pass a command line such as: ls -la")
    if "\x00" in command:
        raise SandboxViolation("The command contains a NUL byte.", "Remove it.")
    if "\n" in command or "\r" in command:
        raise SandboxViolation("The command contains a line break.", "Run one command per call, on one line.")
    for token, what in _ANYWHERE.items():
        if token in command:
            raise SandboxViolation(f"The command uses {what}, which needs a shell.", _NO_SHELL_FIX)
    _scan_unquoted(command)
    try:
        argv = shlex.split(command, posix=True)
    except ValueError as exc:
        raise SandboxViolation(f"The command cannot be parsed: {exc}.", "Balance the quotes.") from exc
    if not argv:
        raise SandboxViolation("The command is empty.", "Pass a command line such as: ls -la")
    if _ASSIGNMENT.match(argv[0]):
        raise SandboxViolation(
            f"The command starts with a variable assignment ({argv[0]}).", "Prefix it with `env`: env NAME=value cmd"
        )
    return argv


def _scan_unquoted(command: str) -> None:
    """Walk the line with POSIX quoting rules and refuse shell syntax found outside quotes."""
    quote, i, word_start = "", 0, True
    while i < len(command):
        char = command[i]
        if quote == "'":
            quote = "" if char == "'" else quote
        elif quote == '"':
            if char == "\\":
                i += 1
            elif char == '"':
                quote = ""
            elif _VARIABLE.match(command, i):
                raise _variable_error(command, i)
        elif char == "\\":
            i, word_start = i + 1, False
        elif char in "'\"":
            quote, word_start = char, False
        elif char.isspace():
            word_start = True
        else:
            _check_unquoted_char(command, i, word_start)
            word_start = False
        i += 1


def _check_unquoted_char(command: str, i: int, word_start: bool) -> None:
    char = command[i]
    for token, what in _OPERATORS.items():
        if command.startswith(token, i):
            raise SandboxViolation(f"The command uses {what}, which needs a shell.", _NO_SHELL_FIX)
    if char in _GLOBS:
        raise SandboxViolation(
            f"The command uses the wildcard {char!r}, which is not expanded here.",
            "Name the files explicitly, or quote the pattern for programs that take one (find -name '*.txt').",
        )
    if _VARIABLE.match(command, i):
        raise _variable_error(command, i)
    if word_start and char == "~":
        raise SandboxViolation("'~' is not expanded here.", "Use a path relative to the workspace.")
    if word_start and char == "#":
        raise SandboxViolation("The command contains a '#' comment, which needs a shell.", "Remove the comment.")


def _variable_error(command: str, i: int) -> SandboxViolation:
    return SandboxViolation(
        f"The command uses the variable {command[i : i + 2]}..., which is not expanded here.",
        "Write the value itself, or single-quote it if the program expects a literal '$'.",
    )


def _environment(workspace: Workspace) -> dict[str, str]:
    """Only what programs need to run; nothing that could carry secrets from Shoal's own environment."""
    return {
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": str(workspace.root),
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }


def _find_program(argv0: str, env: dict[str, str]) -> None:
    """Fail before starting anything when the program does not exist, with a useful hint."""
    if "/" in argv0 or shutil.which(argv0, path=env["PATH"]):
        return
    if argv0 in _BUILTINS:
        raise ToolError(f"`{argv0}` is a shell builtin, and commands run without a shell.", _NO_SHELL_FIX)
    raise ToolError(f"Command not found: {argv0}", "Check the spelling, or install the program.")


@dataclass
class _Capture:
    """Stdout and stderr sharing one byte budget; the rest is drained (so the child never blocks) and counted."""

    budget: int
    kept: dict[str, bytearray] = field(default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()})
    dropped: int = 0

    async def drain(self, stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            keep = chunk[: self.budget]
            self.kept[name] += keep
            self.budget -= len(keep)
            self.dropped += len(chunk) - len(keep)

    def text(self, name: str) -> str:
        return self.kept[name].decode("utf-8", errors="replace")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the program and everything it started; quiet when they are already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        elif proc.returncode is None:
            proc.kill()


async def _reap(proc: asyncio.subprocess.Process, readers: asyncio.Future[Any]) -> None:
    """After a kill: collect the exit status and stop the readers, without hanging on stray pipes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), _GRACE_SECONDS)
    readers.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(readers, _GRACE_SECONDS)


async def _wait_for_output(proc: asyncio.subprocess.Process, readers: asyncio.Future[Any]) -> None:
    """Wait for end of output; if the program exits while something it started still holds the pipes
    (`sh -c 'server &'`), kill the leftovers instead of waiting for them until the timeout."""
    while not readers.done():
        await asyncio.wait([readers], timeout=_POLL_SECONDS)
        if proc.returncode is not None and not readers.done():
            _kill_group(proc)
            await asyncio.wait([readers], timeout=_GRACE_SECONDS)
            if not readers.done():  # a process that left our group still holds a pipe
                readers.cancel()
            return


async def _spawn(argv: list[str], ws: Workspace) -> asyncio.subprocess.Process:
    posix = hasattr(os, "killpg")
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=ws.root,
        env=_environment(ws),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=posix,  # own session and process group: killpg reaches every child
        creationflags=0 if posix else getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
    )


async def _execute(argv: list[str], ws: Workspace, timeout: float, capture: _Capture) -> int:
    """Run argv to completion or until `timeout`; the whole process group dies either way."""
    proc = await _spawn(argv, ws)
    readers = asyncio.gather(capture.drain(proc.stdout, "stdout"), capture.drain(proc.stderr, "stderr"))
    try:
        async with asyncio.timeout(timeout):
            await _wait_for_output(proc, readers)
            return proc.returncode if proc.returncode is not None else await proc.wait()
    except BaseException:  # timeout, cancellation by the executor, anything: leave nothing running
        _kill_group(proc)
        await asyncio.shield(_reap(proc, readers))
        raise
    finally:
        _kill_group(proc)  # children that outlived a program which exited normally
        _close_transport(proc)


def _close_transport(proc: asyncio.subprocess.Process) -> None:
    """Stop listening to pipes a process outside our group may still hold open.

    asyncio offers no public way to do this, and an unclosed transport errors when it is collected
    after its loop has closed. Closing an already finished transport does nothing.
    """
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


class ShellTool(Tool):
    spec = ToolSpec(
        name="shell",
        description=(
            "Run one program in the workspace folder, without a shell: no pipes, redirections, "
            "variables or wildcards; quote arguments that contain special characters."
        ),
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "minLength": 1, "description": "the command line, e.g. git status"},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds; capped by settings"},
            },
            "required": ["command"],
            "additionalProperties": False,
        },
        risk=RiskTier.HIGH,
    )

    def approval_summary(self, args: dict[str, Any]) -> str:
        """The exact argv that would run, re-quoted; or the raw text and why it will be refused."""
        try:
            return shlex.join(parse_command(args.get("command")))
        except ToolError as exc:
            return f"{args.get('command')!r} (will be refused: {exc.message})"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        argv = parse_command(args.get("command"))
        settings: ToolSettings = ctx.settings if ctx.settings is not None else ToolSettings()
        timeout = min(float(args.get("timeout") or settings.shell_timeout), settings.shell_timeout)
        ws = Workspace(ctx.workspace)
        ws.ensure_exists()
        _find_program(argv[0], _environment(ws))
        capture = _Capture(settings.shell_max_output)
        started = time.perf_counter()
        try:
            code = await _execute(argv, ws, timeout, capture)
        except TimeoutError as exc:
            raise ToolError(
                f"The command timed out after {timeout:g} s and was stopped: {shlex.join(argv)}",
                "Run something quicker, or pass a larger timeout (at most tools.shell_timeout).",
            ) from exc
        except OSError as exc:
            raise ToolError(f"Could not start {argv[0]}: {exc.strerror or exc}", "Check the program path.") from exc
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return _output(argv, code, capture, duration_ms)


def _output(argv: list[str], code: int, capture: _Capture, duration_ms: float) -> ToolOutput:
    """Exit status first (so the model cannot miss a failure), then each stream that said something."""
    stdout, stderr = capture.text("stdout"), capture.text("stderr")
    status = f"exit code: {code}"
    if code < 0:
        with contextlib.suppress(ValueError):
            status += f" (killed by {signal.Signals(-code).name})"
    lines = [f"$ {shlex.join(argv)}", status]
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        if text:
            lines += [f"--- {name} ---", text.rstrip("\n")]
    if not stdout and not stderr:
        lines.append("(no output)")
    if capture.dropped:
        lines.append(f"[output truncated: {capture.dropped:,} more bytes were not kept]")
    data = {"command": argv, "exit_code": code, "stdout": stdout, "stderr": stderr}
    return ToolOutput("\n".join(lines), {**data, "duration_ms": duration_ms, "truncated": capture.dropped > 0})
