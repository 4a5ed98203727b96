"""The `shoal` command. Thin: parses flags, builds the core through `app.wiring`, renders events."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from app import render
from app.terminal import LineReader
from app.wiring import build_core, cli_overrides, load
from core import events as ev
from core import paths
from core.errors import EXIT_CODES, Actor, ShoalError, classify
from core.settings import LoadedSettings
from core.tools.registry import ApprovalCallback, ApprovalDecision, ApprovalRequest


class Context:
    def __init__(self, config: Path | None, overrides: dict[str, Any], verbose: bool) -> None:
        self.config = config
        self.overrides = overrides
        self.verbose = verbose

    def settings(self) -> LoadedSettings:
        return load(self.config, self.overrides)

    def config_path(self) -> Path:
        """The config file in use, found without loading it (so a broken file can still be fixed)."""
        return self.config or paths.config_file()


def run_async(coro: Any) -> Any:
    """Run a coroutine; turn ShoalErrors into a message and the actor's exit code."""
    try:
        return asyncio.run(coro)
    except ShoalError as exc:
        render.print_error(exc.to_dict())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


@click.group(invoke_without_command=True)
@click.option("--config", type=click.Path(path_type=Path), help="config.toml to use instead of the user's")
@click.option("--model", "model_path", help="GGUF file to use (implies the llama_cpp provider)")
@click.option("--endpoint", help="OpenAI-compatible base URL (implies the openai provider)")
@click.option("--model-name", help="model id at the endpoint")
@click.option("--data-dir", help="folder for the timeline database")
@click.option("--workspace", help="folder the file and shell tools are confined to")
@click.option("--max-tokens", type=int, help="largest answer per model call")
@click.option("--temperature", type=float)
@click.option("-v", "--verbose", is_flag=True, help="show token counts and timings")
@click.option("--quick-ask", is_flag=True, help="open the quick-ask box (in the running app, if there is one)")
@click.option("--quit", "quit_running", is_flag=True, help="ask the running desktop app to quit")
@click.option("--smoke-test", type=click.Path(path_type=Path), help="run one scripted turn in the window, save a PNG")
@click.option("--startup-probe", is_flag=True, hidden=True, help="print first-window timing as JSON and exit")
@click.option("--screenshots", type=click.Path(path_type=Path), hidden=True, help="with --smoke-test: more PNGs here")
@click.version_option(package_name="shoal")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, model_path: str | None, endpoint: str | None, **flags: Any) -> None:
    """Shoal: a personal assistant with a local agent core. Without a command, opens the desktop app."""
    verbose = flags.pop("verbose")
    quick_ask, smoke_test, probe = flags.pop("quick_ask"), flags.pop("smoke_test"), flags.pop("startup_probe")
    screenshots, quit_running = flags.pop("screenshots"), flags.pop("quit_running")
    overrides = cli_overrides(model=model_path, endpoint=endpoint, **flags)
    ctx.obj = Context(config, overrides, verbose)
    if ctx.invoked_subcommand is not None:
        return
    from app import gui

    if probe:
        sys.exit(gui.run_startup_probe())
    if smoke_test is not None:
        sys.exit(gui.run_smoke_test(smoke_test, screenshots=screenshots))
    try:
        loaded = ctx.obj.settings()
    except ShoalError as exc:
        render.print_error(exc.to_dict())
        sys.exit(exc.exit_code)
    sys.exit(gui.run_desktop(loaded, quick_ask=quick_ask, quit_running=quit_running))


def approval_prompt(auto_yes: bool, reader: LineReader | None = None) -> ApprovalCallback:
    """Ask on the terminal; with no terminal, deny unless --yes was given."""
    shared: list[LineReader] = [reader] if reader is not None else []

    async def approve(request: ApprovalRequest) -> ApprovalDecision:
        if auto_yes:
            render.err.print(f"[yellow]approved by --yes:[/yellow] {request.summary}")
            return ApprovalDecision.APPROVE_ONCE
        if not sys.stdin.isatty():
            render.err.print(
                f"[yellow]{request.tool} needs approval and there is no terminal to ask: denied. "
                f"Re-run with --yes or add it to tools.auto_approve.[/yellow]"
            )
            return ApprovalDecision.DENY
        for _ in range(3):  # let the printer show the events queued before this question
            await asyncio.sleep(0)
        render.err.print(f"\n[bold yellow]Approve {request.risk.value}-risk tool {request.tool}?[/bold yellow]")
        render.err.print(f"  {request.summary}")
        if not shared:
            shared.append(LineReader())
        line = await shared[0].ask("  [y]es once / [a]lways this session / [N]o: ", sys.stderr)
        answer = (line or "").strip().lower()
        if answer in ("y", "yes"):
            return ApprovalDecision.APPROVE_ONCE
        if answer in ("a", "always"):
            return ApprovalDecision.APPROVE_SESSION
        return ApprovalDecision.DENY

    return approve


async def _run_turn(
    core: Any, session_id: str, text: str, printer: render.Printer, label: str | None = None
) -> ev.AgentEvent | None:
    turn = core.send(session_id, text, label=label)
    try:
        async for event in turn:
            printer.handle(event)
    finally:
        printer.close()
    return await turn.result()


@cli.command()
@click.option("-m", "--message", required=True, help="the message to send ('-' reads stdin)")
@click.option("-s", "--session", help="continue this session (id or unique prefix)")
@click.option("-y", "--yes", is_flag=True, help="approve high-risk tool calls without asking")
@click.option("--json", "as_json", is_flag=True, help="print every event as one JSON object per line")
@click.option(
    "--label",
    type=click.Choice(["public", "internal", "confidential", "secret"]),
    help="the message's sensitivity label (default: the policy's classifier rules, else policy.default_label)",
)
@click.pass_obj
def agent(obj: Context, message: str, session: str | None, yes: bool, as_json: bool, label: str | None) -> None:
    """Send one message, stream the answer to stdout, exit non-zero on failure."""
    text = sys.stdin.read() if message == "-" else message

    async def main() -> int:
        async with build_core(obj.settings(), approval_prompt(yes)) as core:
            info = await core.sessions.get(session) if session else await core.new_session()
            printer = render.JsonPrinter() if as_json else render.TurnPrinter(verbose=obj.verbose)
            final = await _run_turn(core, info.id, text, printer, label)
            if obj.verbose:
                render.err.print(f"[dim]session {info.id}[/dim]")
            return _exit_code(final)

    sys.exit(run_async(main()))


def _exit_code(final: ev.AgentEvent | None) -> int:
    if isinstance(final, ev.TurnFailed):
        return EXIT_CODES.get(Actor(final.error.get("actor", "bug")), 1)
    if isinstance(final, ev.TurnFinished) and final.status == "ok":
        return 0
    if isinstance(final, ev.TurnFinished) and final.status == "cancelled":
        return 130
    return 1


@cli.command()
@click.option("-s", "--session", help="resume this session (id or unique prefix)")
@click.pass_obj
def chat(obj: Context, session: str | None) -> None:
    """An interactive chat in the terminal. Ctrl+C stops an answer; Ctrl+D (or /quit) leaves."""
    from app import first_run
    from app.chat_repl import repl

    loaded = obj.settings()
    if first_run.needs_model(loaded.settings) and sys.stdin.isatty() and first_run.pick_model(loaded):
        loaded = obj.settings()
    run_async(repl(loaded, session, obj.verbose))


def main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    from app import (  # noqa: F401 - registers their commands
        cli_claims,
        cli_config,
        cli_get,
        cli_group,
        cli_group_admin,
        cli_group_status,
        cli_inspect,
        cli_kshark,
        cli_memory,
        cli_policy,
        cli_replay,
        cli_schedule,
        cli_serve,
        cli_zones,
    )

    try:
        cli.main(prog_name="shoal", standalone_mode=True)
    except ShoalError as exc:  # pragma: no cover - commands handle their own
        render.print_error(exc.to_dict())
        sys.exit(exc.exit_code)
    except Exception as exc:
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            raise
        error = classify(exc)
        render.print_error(error.to_dict())
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
