"""`shoal serve`: run the agent headless behind an HTTP API (docs/serve.md)."""

from __future__ import annotations

import sys
from typing import Any

import click

from app import render
from app.cli import Context, cli, run_async
from core.errors import ShoalError


@cli.command()
@click.option("--host", help="address to bind (default serve.host: 127.0.0.1)")
@click.option("--port", type=int, help="TCP port (default serve.port: 8765; 0 picks a free one)")
@click.option("--no-auth", is_flag=True, help="ask no bearer token (loopback only)")
@click.option("--show-token", is_flag=True, help="print the bearer token (creating it if needed) and exit")
@click.option("--rotate-token", is_flag=True, help="replace the bearer token (from the next start) and exit")
@click.option("--no-schedule", is_flag=True, help="do not run scheduled prompts in this process")
@click.pass_obj
def serve(obj: Context, host: str | None, port: int | None, no_auth: bool, **flags: Any) -> None:
    """Run the agent without a window, behind an HTTP API (chat, SSE, /v1 OpenAI-compatible, /metrics).

    Binds to loopback by default. Any other address needs the bearer token, which is generated on first run
    and kept in the OS keyring (or SHOAL_SERVE_TOKEN where there is no keyring).
    """
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if no_auth:
        overrides["auth"] = False
    if overrides:
        obj.overrides = {**obj.overrides, "serve": {**obj.overrides.get("serve", {}), **overrides}}
    try:
        loaded = obj.settings()
        if flags["show_token"] or flags["rotate_token"]:
            _token(loaded.settings.serve.token_name, rotate=flags["rotate_token"])
            return
    except ShoalError as exc:
        render.print_error(exc.to_dict())
        sys.exit(exc.exit_code)
    run_async(_run(loaded, schedule=not flags["no_schedule"]))


def _token(name: str, *, rotate: bool) -> None:
    from app.serve.auth import ensure_token, rotate_token

    if rotate:
        click.echo(rotate_token(name))
        render.err.print(
            "[yellow]New token stored. A running shoal serve keeps the old one until it restarts; "
            "after that, clients using the old one get 401.[/yellow]"
        )
        return
    secret, created = ensure_token(name)
    click.echo(secret.value)
    render.err.print(f"[dim]{'generated and stored in' if created else 'from'} {secret.origin}[/dim]")


async def _run(loaded: Any, *, schedule: bool) -> None:
    from app.serve.auth import decide_access
    from app.serve.server import banner, print_banner, serve
    from app.wiring import build_core
    from core.approvals import ApprovalBroker

    settings = loaded.settings.serve
    access = decide_access(settings)  # refuse an unsafe bind before loading anything
    broker = ApprovalBroker()
    async with build_core(loaded, broker.ask) as core:
        if schedule and hasattr(core, "start_scheduler"):
            await core.start_scheduler()
        await serve(
            loaded, core, broker, access=access, on_ready=lambda ready: print_banner(banner(ready, settings, False))
        )
