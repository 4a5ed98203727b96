"""`shoal replay`: list a past sequence of a group topic, verified, and optionally run its tasks again.

Reading never touches the live group (core/group/replay.py: no consumer group, no commits, nothing sent).
`--refeed` runs each task request of the sequence through a scratch agent built here, over a temporary data
folder, with every approval denied (core/group/replay_refeed.py says why and what else is switched off), and
prints the original result beside the reproduced one. Details: docs/replay.md.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from app import render
from app.cli import Context, cli, run_async
from core.errors import ConfigError
from core.group.replay_query import POSITION_HELP

out = Console(highlight=False, soft_wrap=True)
STATUS_STYLE = {"verified": "green", "unknown-sender": "yellow", "wrong-group": "yellow"}


@cli.command()
@click.option("-t", "--topic", required=True, help="suffix (requests, responses, skill.<skill>.requests…) or full name")
@click.option("--from", "start", default="beginning", show_default=True, help=f"where to start: {POSITION_HELP}")
@click.option("--to", "stop", default=None, help="where to stop (inclusive): an offset, partition:offset or a time")
@click.option("-n", "--limit", type=int, help="at most this many envelopes (the earliest)")
@click.option("-c", "--correlation", default="", help="only this correlation id (a prefix is enough)")
@click.option("--type", "types", multiple=True, help="only this event type, e.g. task.request (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: each envelope in full, with where and status")
@click.option("--refeed", is_flag=True, help="run each task request again in a scratch agent and compare")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="GGUF for the scratch agent")
@click.option("--workspace", type=click.Path(file_okay=False), help="the scratch agent's workspace (default: empty)")
@click.option("--timeout", default=30.0, show_default=True, help="seconds the reading may take")
@click.pass_obj
def replay(
    obj: Context,
    topic: str,
    start: str,
    stop: str | None,
    limit: int | None,
    correlation: str,
    types: tuple[str, ...],
    as_json: bool,
    refeed: bool,
    model_path: str | None,
    workspace: str | None,
    timeout: float,
) -> None:
    """Print a past sequence of a group topic, each envelope marked verified, unknown-sender or bad-signature,
    without joining or changing the live group. --refeed reproduces the tasks in a scratch agent."""
    from core.group.replay import replay as read
    from core.group.replay_query import ReplayQuery

    loaded = obj.settings()
    query = ReplayQuery.from_text(topic, start, stop, limit=limit, correlation=correlation, types=types)

    async def main() -> int:
        result = await read(loaded.settings.group, query, timeout=timeout)
        for entry in result.entries:
            if as_json:
                print(json.dumps(entry.to_json(), ensure_ascii=False), flush=True)
            else:
                out.print(_line(entry.row()))
        _footer(result)
        if refeed:
            await _refeed(loaded, result.entries, as_json, model_path, workspace, timeout)
        return 0

    sys.exit(run_async(main()))


def _line(row: dict[str, Any]) -> str:
    """One envelope on one line: where, when, what, who, which conversation, checked or not, a few words."""
    style = STATUS_STYLE.get(row["status"], "red")
    sender = f"{row['sender'] or '?'} ({row['agentid'][:12]})" if row["agentid"] else "?"
    cause = row["causationid"][:12] or "-"
    return (
        f"[dim]{row['partition']}:{row['offset']}[/dim] {row['time'][11:23] or '?':12} "
        f"[bold]{row['type'].removeprefix('shoal.') or '?'}[/bold] from [cyan]{sender}[/cyan] "
        f"corr {row['correlationid'][:12] or '-'} cause {cause} [{style}]{row['status']}[/{style}] "
        f"{_escape(row['summary'])}"
    )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _footer(result: Any) -> None:
    from core.group.replay_refeed import verified_share

    ends = ", ".join(f"{p}:{end}" for p, end in sorted(result.ends.items()))
    shown = len(result.entries)
    verified = verified_share(result.entries) if shown else "nothing matched"
    render.err.print(
        f"[dim]{shown} envelope{'s' * (shown != 1)} of {result.topic} ({verified}); "
        f"read {result.scanned} records up to the end as of the start ({ends or 'no partitions'})[/dim]"
    )


async def _refeed(
    loaded: Any, entries: list[Any], as_json: bool, model_path: str | None, workspace: str | None, timeout: float
) -> None:
    from app.first_run import SETUP_HINT, needs_model
    from app.wiring import build_core, setup_logging
    from core.group.replay_refeed import original_results, refeed, scratch_settings, task_requests

    requests = task_requests(entries)
    if not requests:
        render.err.print("[yellow]No task requests in this sequence: nothing to re-feed.[/yellow]")
        return
    taskids = {str(r.data.get("taskid") or "") for r in requests}
    originals = await original_results(loaded.settings.group, taskids, timeout=timeout)
    setup_logging(loaded)  # the user's log file: the scratch core's wiring then leaves logging as it is
    with tempfile.TemporaryDirectory(prefix="shoal-replay-") as folder:
        where = Path(workspace) if workspace else None
        scratch = scratch_settings(loaded.settings, Path(folder), workspace=where, model_path=model_path)
        if needs_model(scratch):
            raise ConfigError(
                "The scratch agent has no model to re-feed with.", "Pass --model FILE.gguf.\n" + SETUP_HINT
            )
        render.err.print(
            f"[dim]re-feeding {len(requests)} task(s) into a scratch agent ({folder}); approvals: deny[/dim]"
        )
        async with build_core(dataclasses.replace(loaded, settings=scratch)) as core:
            async for repro in refeed(core, requests, originals):
                if as_json:
                    print(json.dumps(repro.to_json(), ensure_ascii=False), flush=True)
                else:
                    out.print(_comparison(repro))


def _comparison(repro: Any) -> Table:
    """The original result beside the reproduced answer, and the scratch agent's steps below."""
    same = {True: "[green]same answer[/green]", False: "[red]different[/red]", None: "[dim]no original[/dim]"}
    request = repro.request
    title = f"task {repro.taskid[:12]} from {request.sender or request.attr('agentid')[:12]} — {same[repro.same]}"
    table = Table(title=title, title_justify="left", expand=True, show_lines=True)
    table.add_column("", style="dim", no_wrap=True)
    table.add_column("original")
    table.add_column("reproduced (scratch agent)")
    original = repro.original
    taker = (original.data.get("agent") or {}).get("name", "") if original else ""
    table.add_row("input", _escape(repro.input), "")
    table.add_row("status", f"{repro.original_status or '—'} {taker}".strip(), repro.status + _error(repro.error))
    table.add_row("answer", _escape(repro.original_output or "—"), _escape(repro.answer or "—"))
    for number, step in enumerate(repro.steps, start=1):
        approval = f" [{step['approval']}]" if step.get("approval") else ""
        outcome = "ok" if step.get("ok") else "failed"
        args = json.dumps(step.get("arguments", {}), ensure_ascii=False)[:120]
        table.add_row(
            f"step {number}", "", _escape(f"{step['tool']}({args}){approval} → {outcome}: {step.get('output', '')}")
        )
    return table


def _error(error: str) -> str:
    return f": {_escape(error)}" if error else ""
