"""`shoal config …` and `shoal doctor`."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from app import render
from app.cli import Context, cli, run_async
from core import config_file
from core.errors import ConfigError
from core.secrets import delete_api_key, get_api_key, mask, set_api_key
from core.settings import flatten, load_settings


@cli.group()
def config() -> None:
    """Show and change settings (secrets go to the OS keyring, never to the file)."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def config_show(obj: Context, as_json: bool) -> None:
    """The effective settings, where each value came from, and the API key masked."""
    loaded = obj.settings()
    values = flatten(loaded.settings)
    values["mcp_servers"] = [  # server environments often carry tokens: show their names only
        {**server, "env": {name: mask(value) for name, value in server["env"].items()}}
        for server in values.get("mcp_servers", [])
    ]
    secret = get_api_key(loaded.settings.model.key_name)
    key_display = f"{secret.masked} ({secret.origin})" if secret else "(not set)"
    if as_json:
        rows = {k: {"value": v, "source": loaded.source_of(k)} for k, v in values.items()}
        rows["secrets.api_key"] = {
            "value": secret.masked if secret else None,
            "source": secret.origin if secret else None,
        }
        click.echo(json.dumps({"config_file": str(loaded.config_file), "settings": rows}, indent=2, default=str))
        return
    table = Table(title=f"Shoal settings  (file: {loaded.config_file})", title_justify="left")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    table.add_column("from", style="dim")
    for key, value in values.items():
        shown = value if len(str(value)) < 200 else str(value)[:200] + "…"
        table.add_row(key, str(shown), loaded.source_of(key))
    table.add_row("secrets.api_key", key_display, "keyring/env")
    from rich.console import Console

    Console().print(table)


@config.command("path")
@click.pass_obj
def config_path(obj: Context) -> None:
    """Print the config file's path."""
    click.echo(obj.config_path())


@config.command("set")
@click.argument("key")
@click.argument("value")
@click.pass_obj
def config_set(obj: Context, key: str, value: str) -> None:
    """Set KEY (dotted, e.g. model.path) to VALUE in config.toml, after validating it."""
    path = obj.config_path()
    try:
        stored = config_file.set_value(path, key, config_file.parse_value(value))
        load_settings(path, {})  # the file as a whole still loads (environment variables included)
    except ConfigError as exc:
        render.print_error(exc.to_dict())
        sys.exit(exc.exit_code)
    click.echo(f"{key} = {stored!r}  ({path})")


@config.command("set-key")
@click.option("--name", default=None, help="keyring entry (default: model.key_name)")
@click.pass_obj
def config_set_key(obj: Context, name: str | None) -> None:
    """Store the endpoint API key in the OS keyring (asked without echo)."""
    key_name = name or obj.settings().settings.model.key_name
    value = click.prompt("API key", hide_input=True).strip()
    try:
        set_api_key(value, key_name)
    except ConfigError as exc:
        render.print_error(exc.to_dict())
        sys.exit(exc.exit_code)
    click.echo(f"Stored in the keyring as {key_name!r}.")


@config.command("delete-key")
@click.option("--name", default=None)
@click.pass_obj
def config_delete_key(obj: Context, name: str | None) -> None:
    """Remove the endpoint API key from the OS keyring."""
    key_name = name or obj.settings().settings.model.key_name
    click.echo("Deleted." if delete_api_key(key_name) else "No key was stored.")


@cli.command()
@click.pass_obj
def doctor(obj: Context) -> None:
    """Check model, endpoint, keyring, data folder and tools, and say what to fix."""
    from core.doctor import run_checks

    try:
        settings = obj.settings().settings
    except ConfigError as exc:
        render.err.print(f"[red]✗[/red] [bold]settings[/bold]: {exc.message}\n    [cyan]→ {exc.fix}[/cyan]")
        render.err.print(f"[dim]Fix it with `shoal config set KEY VALUE` or edit {obj.config_path()}.[/dim]")
        sys.exit(1)
    checks = run_async(run_checks(settings))
    failed = False
    for check in checks:
        if check.ok:
            mark = "[green]✓[/green]"
        elif check.required:
            mark, failed = "[red]✗[/red]", True
        else:
            mark = "[yellow]![/yellow]"
        render.err.print(f"{mark} [bold]{check.name}[/bold]: {check.detail}")
        if not check.ok and check.fix:
            render.err.print(f"    [cyan]→ {check.fix}[/cyan]")
    render.err.print("[green]All required checks pass.[/green]" if not failed else "[red]Fix the ✗ items above.[/red]")
    sys.exit(1 if failed else 0)
