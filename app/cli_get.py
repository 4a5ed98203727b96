"""`shoal get …` and `shoal describe …`: what the group is doing, kubectl-style, from the terminal.

`get KIND` lists, `describe KIND ID` shows one in full; both take `--json`. This module makes the two groups
and the `tasks` / `task` kind (core/group/taskviews.py): this agent's own group tasks from its database, plus
the live tasks members' roster cards show, read by joining the group for a moment as a short-lived member
(like `shoal group members`); `--local` skips joining and reads the database only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from app import render
from app.cli import Context, cli, run_async

out = Console(highlight=False)
STATUS_STYLE = {"ok": "green", "running": "cyan", "waiting": "yellow", "sent": "yellow", "error": "red",
                "expired": "red", "refused": "red", "unanswered": "red", "cancelled": "yellow"}  # fmt: skip


@cli.group("get")
def get() -> None:
    """List what the group is doing: `shoal get tasks`, `shoal get agents`, `shoal get zones`."""


@cli.group("describe")
def describe() -> None:
    """Show one thing in full: `shoal describe task ID`, `shoal describe agent X`."""


# --- where this agent's database and the group's roster come from ------------------------------------------


@contextlib.asynccontextmanager
async def _sources(obj: Context, local: bool, wait: float) -> AsyncIterator[tuple[Any, list[Any]]]:
    """(the database, live members): with `local`, the database alone and no members."""
    if local:
        from core.history import History

        async with History(obj.settings().settings) as history:
            yield history.db, []
        return
    from app.cli_group import _ephemeral_core

    core = await _ephemeral_core(obj, wait, admit=False)  # it only reads
    try:
        own = core.group.node.agent_id  # this short-lived member itself works on nothing
        yield core.db, [m for m in core.group.members() if m.agentid != own]
    finally:
        await core.stop()


def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} m {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} m"


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


# --- get tasks ---------------------------------------------------------------------------------------------


@get.command("tasks")
@click.option("--json", "as_json", is_flag=True)
@click.option("--local", is_flag=True, help="this agent's database only: do not join the group for live tasks")
@click.option("-n", "--limit", default=30, show_default=True, help="most recent tasks of this agent to show")
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.pass_obj
def get_tasks(obj: Context, as_json: bool, local: bool, limit: int, wait: float) -> None:
    """Group tasks: the ones this agent sent and took (newest first), then the ones members are working on."""
    from core.group.taskviews import local_tasks, with_live

    async def main() -> None:
        async with _sources(obj, local, wait) as (db, members):
            tasks = with_live(await local_tasks(db, limit), members)
        if as_json:
            click.echo(json.dumps([task.to_dict() for task in tasks], indent=2))
            return
        if not tasks:
            out.print("[dim]No group tasks yet (none sent or taken here, none running in the group).[/dim]")
            return
        table = Table("id", "skill", "status", "assignee", "requester", "step", "elapsed", box=None)
        for task in tasks:
            table.add_row(
                f"[cyan]{task.taskid[:12]}[/cyan]",
                task.skill or "—",
                _status(task.status),
                render.short(task.assignee or "—", 24),
                render.short(task.requester or "—", 24),
                task.step_text,
                _elapsed(task.elapsed_s),
            )
        out.print(table)

    run_async(main())


# More kinds register on `get` / `describe` from their own modules, same shape (a command with --json):
# app/cli_zones.py adds `get agents`, `get zones` and `describe agent`.


# --- describe task -----------------------------------------------------------------------------------------


@describe.command("task")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--local", is_flag=True, help="this agent's database only: do not join the group")
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.pass_obj
def describe_task(obj: Context, task_id: str, as_json: bool, local: bool, wait: float) -> None:
    """One task (an id prefix of 4+ characters will do): status, who took it, its steps and its result."""
    from core.group import taskviews

    async def main() -> None:
        async with _sources(obj, local, wait) as (db, members):
            detail = await taskviews.describe(db, task_id, members)
        if as_json:
            click.echo(json.dumps(detail.to_dict(), indent=2))
            return
        _print_detail(detail)

    run_async(main())


def _print_detail(detail: Any) -> None:
    task = detail.task
    where = {"out": "sent by this agent", "in": "taken by this agent", "seen": "on a member's card"}
    out.print(f"[bold]task[/bold] [cyan]{task.taskid}[/cyan]  [dim]({where.get(task.direction, task.direction)})[/dim]")
    rows = [
        ("status", _status(task.status)),
        ("skill", task.skill or "— (addressed to one agent)"),
        ("assignee", task.assignee or "—"),
        ("requester", task.requester or "—"),
        ("step", f"{task.step_text}  {task.message}".rstrip() if task.step is not None else "—"),
        ("elapsed", _elapsed(task.elapsed_s)),
        ("created", task.created_at or "—"),
        ("updated", task.updated_at or "—"),
        ("deadline", task.deadline or "—"),
    ]
    for name, value in rows:
        out.print(f"  {name:<10}{value}")
    if task.input:
        out.print("  input")
        out.print(f"    {render.short(task.input, 400)}", markup=False)
    if detail.history:
        out.print("[bold]history[/bold]")
        for entry in detail.history:
            out.print(f"  {entry.at[11:23]}  {entry.what:<9} {entry.who:<16} {entry.detail}", markup=False)
    if detail.output or detail.error:
        out.print("[bold]result[/bold]")
        if detail.error:
            out.print(f"  [red]{detail.error}[/red]")
        if detail.output:
            out.print(detail.output, markup=False)
