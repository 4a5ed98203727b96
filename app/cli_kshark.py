"""`shoal kshark` (and its alias `shoal group test`): the group connection doctor in the terminal.

A table with one row per check (OK / WARN / FAIL / SKIP, what was found, and under anything not OK what to
do), filled in as checks finish; `--json` prints one document for machines instead (docs/kshark.md has its
schema). Exit codes: 0 when nothing failed (warnings allowed), 2 when a check failed, and with `--strict` 1
when the worst is a warning, so a script can wait for a clean bill of health.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from app.cli import Context, cli, run_async

out = Console(highlight=False)
COLOURS = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
DEFAULT_TIMEOUT = 15.0


def kshark_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options `shoal kshark` and `shoal group test` share."""
    options = [
        click.option("--json", "as_json", is_flag=True, help="print one JSON report (schema in docs/kshark.md)"),
        click.option(
            "--bootstrap",
            "bootstrap",
            multiple=True,
            metavar="HOST:PORT",
            help="check this server instead of group.bootstrap_servers (repeatable)",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=1.0),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="seconds for the whole run; each network step gets at most a third",
        ),
        click.option("--no-probe", is_flag=True, help="skip the produce/consume probe (creates a scratch topic)"),
        click.option("--strict", is_flag=True, help="exit 1 when the worst result is a warning"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command("kshark")
@kshark_options
@click.pass_obj
def kshark(
    obj: Context, as_json: bool, bootstrap: tuple[str, ...], timeout: float, no_probe: bool, strict: bool
) -> None:
    """Diagnose the group connection: per bootstrap server DNS, TCP, TLS (certificate names and expiry) and
    Kafka; then SASL, metadata, the group's topics, a produce/consume probe, consumer groups and their lag."""
    run_report(obj, as_json=as_json, bootstrap=bootstrap, timeout=timeout, probe=not no_probe, strict=strict)


def run_report(
    obj: Context, *, as_json: bool, bootstrap: tuple[str, ...], timeout: float, probe: bool, strict: bool
) -> None:
    """Run every check once and exit with the report's exit code (the body of both commands)."""
    from core.group import kshark as ks

    settings = obj.settings().settings.group
    if bootstrap:
        settings = settings.model_copy(update={"bootstrap_servers": list(bootstrap)})
    step = timeout / 3

    async def main() -> int:
        started = time.time()
        checks: list[Any] = []
        report = ks.run_checks(settings, probe=probe, timeout=step, budget=timeout)
        if as_json:
            checks = [check async for check in report]
            meta = ks.meta(settings, probe=probe, timeout=step, budget=timeout)
            print(json.dumps(ks.report_dict(checks, meta=meta, started=started, strict=strict), indent=2))
            return ks.exit_code(checks, strict=strict)
        table = _table(settings.name)
        live = Live(table, console=out, refresh_per_second=8) if out.is_terminal else contextlib.nullcontext()
        with live:  # on a terminal the table fills in as checks finish; piped, it is printed once at the end
            async for check in report:
                checks.append(check)
                _add_row(table, check)
        if not out.is_terminal:
            out.print(table)
        verdict = ks.overall(checks)
        colour = COLOURS.get(verdict, "")
        seconds = time.time() - started
        out.print(f"[{colour}][bold]{verdict.upper()}[/bold][/{colour}] ({ks.tally(checks)}) in {seconds:.1f} s")
        return ks.exit_code(checks, strict=strict)

    sys.exit(run_async(main()))


def _table(group: str) -> Table:
    table = Table(title=f"kshark: group {group}", title_justify="left", expand=False, show_lines=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True, style="bold")
    table.add_column("detail", overflow="fold")
    table.add_column("ms", justify="right", style="dim")
    return table


def _add_row(table: Table, check: Any) -> None:
    colour = COLOURS.get(check.status, "")
    status = Text(check.status.upper(), style=f"bold {colour}")
    detail: Any = Text(check.detail)
    if check.hint and check.status in ("warn", "fail"):
        detail = Group(Text(check.detail), Text(f"→ {check.hint}", style="cyan"))
    table.add_row(status, check.name, detail, f"{check.duration_ms:.0f}")
