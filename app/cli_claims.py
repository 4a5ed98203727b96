"""`shoal claims list`: the work keys members of the group hold right now (docs/coordination.md).

Joins the group for a moment as a short-lived member (like `shoal group members`), reads the claims topic from
its beginning, and prints the claims every member agrees are live.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from app import render
from app.cli import Context, cli, run_async

out = Console(highlight=False)


@cli.group()
def claims() -> None:
    """Claims on work keys: who in the group is doing which piece of work."""


@claims.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.pass_obj
def list_claims(obj: Context, as_json: bool, wait: float) -> None:
    """Live claims: work key, holder, state (claimed: working; done: finished, kept off) and when each expires."""
    from app.cli_group import _ephemeral_core
    from core.timeline.ids import parse_iso

    async def main() -> None:
        core = await _ephemeral_core(obj, wait, admit=False)  # it only reads
        try:
            book = core.group.node.claims
            live = [(claim, book.holder_name(claim)) for claim in book.live()]
        finally:
            await core.stop()
        if as_json:
            click.echo(json.dumps([{**claim.to_dict(), "holdername": name} for claim, name in live], indent=2))
            return
        if not live:
            out.print("[dim]No live claims in this group.[/dim]")
            return
        now = datetime.now(UTC)
        table = Table("work key", "holder", "state", "claimed", "expires in", box=None)
        for claim, name in live:
            expires = parse_iso(claim.expiresat)
            left = f"{max(0, int((expires - now).total_seconds()))} s" if expires else "?"
            table.add_row(render.short(claim.workkey, 60), name, claim.state, claim.claimedat[11:19], left)
        out.print(table)

    run_async(main())
