"""`shoal schedule …`: recurring and one-off prompts from the terminal.

Adding, listing and changing jobs opens only the database (no model, no MCP servers), so it is instant and
works while the desktop app runs: the app's runner sees a change within 30 seconds. Jobs run while the desktop
app or `shoal serve` runs; `shoal schedule run` runs one now, in the foreground, streaming its answer like
`shoal agent`. IDs take a unique prefix (the 8 characters `list` shows) or the job's name.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from app import render
from app.cli import Context, approval_prompt, cli, run_async
from core import events as ev

out = Console(highlight=False)
STATUS_STYLE = {"ok": "green", "failed": "red", "cancelled": "yellow", "skipped": "yellow", "missed": "yellow",
                "running": "cyan", "queued": "cyan"}  # fmt: skip
RUNS_NOTE = "Jobs run while the desktop app (or `shoal serve`) is running."


@contextlib.asynccontextmanager
async def _store(obj: Context) -> AsyncIterator[Any]:
    from core.history import History
    from core.schedule import ScheduleStore

    async with History(obj.settings().settings) as history:
        yield ScheduleStore(history.db)


def _status(status: str | None) -> str:
    if not status:
        return "[dim]never run[/dim]"
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _next_text(job: Any, now: Any) -> str:
    from core.schedule.words import relative, when

    if not job.enabled:
        return "[dim]disabled[/dim]"
    if job.next_run is None:
        return "[dim]—[/dim]"
    return f"{when(job.next_run, now=now)} [dim]({relative(job.next_run, now)})[/dim]"


@cli.group()
def schedule() -> None:
    """Scheduled prompts: recurring (cron, intervals) and one-off (see docs/schedule.md)."""


@schedule.command("add")
@click.argument("prompt")
@click.option("--cron", help='five-field cron expression in local time, e.g. "0 8 * * 1-5"')
@click.option("--every", help="an interval: 30m, 2h, 1d, 1h30m (at least 1 minute)")
@click.option("--at", "at_", help='once, at a local date and time: "2026-12-01 08:00" (or HH:MM)')
@click.option("--name", default="", help="a short name (default: the start of the prompt)")
@click.option("--catch-up", type=click.Choice(["once", "skip"]), help="missed runs (default: schedule.catch_up)")
@click.option("--no-notify", is_flag=True, help="no desktop notification when it runs")
@click.option("--claim", default="", metavar="KEY", help="group work key: each time runs once across the group")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def add(
    obj: Context,
    prompt: str,
    cron: str | None,
    every: str | None,
    at_: str | None,
    name: str,
    catch_up: str | None,
    no_notify: bool,
    claim: str,
    as_json: bool,
) -> None:
    """Add a job: PROMPT runs on the schedule given by exactly one of --cron, --every, --at. With --claim KEY, the
    same job added on several machines of a group runs each time on one of them (docs/coordination.md)."""

    async def main() -> None:
        async with _store(obj) as store:
            job = await store.add(
                prompt, cron=cron, every=every, at=at_, name=name, catch_up=catch_up, notify=not no_notify,
                group_claim=claim or None,
            )  # fmt: skip
            if as_json:
                click.echo(json.dumps(job.to_dict()))
                return
            out.print(f"Added [cyan]{job.short_id}[/cyan] [bold]{job.name}[/bold]: {job.describe()}", highlight=False)
            out.print(f"  next run {_next_text(job, store.now())}")
            from core.schedule.words import when

            for moment in job.spec.upcoming(store.now(), store.zone(), 3)[1:]:
                out.print(f"  then     {when(moment, now=store.now())}")
            render.err.print(f"[dim]{RUNS_NOTE}[/dim]")

    run_async(main())


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(obj: Context, as_json: bool) -> None:
    """Jobs: name, schedule in words, next run and how the last one went."""

    async def main() -> None:
        async with _store(obj) as store:
            jobs = await store.list_jobs()
            if as_json:
                click.echo(json.dumps([job.to_dict() for job in jobs]))
                return
            if not jobs:
                out.print('No scheduled jobs. Add one: shoal schedule add "summarise my notes" --cron "0 8 * * 1-5"')
                return
            now = store.now()
            table = Table(box=None)
            for column in ("id", "name", "schedule", "next run", "last"):
                table.add_column(column, no_wrap=column != "name", min_width=16 if column == "name" else None)
            for job in jobs:
                table.add_row(
                    f"[cyan]{job.short_id}[/cyan]",
                    render.short(job.name, 40),
                    job.describe(),
                    _next_text(job, now),
                    _status(job.last_status),
                )
            out.print(table)

    run_async(main())


@schedule.command("show")
@click.argument("job_id")
@click.option("-n", "--limit", default=10, show_default=True, help="recent runs to show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(obj: Context, job_id: str, limit: int, as_json: bool) -> None:
    """A job in full, with its recent runs."""

    async def main() -> None:
        async with _store(obj) as store:
            job = await store.get(job_id)
            runs = await store.runs(job.id, limit)
            if as_json:
                click.echo(json.dumps({"job": job.to_dict(), "runs": [r.to_dict() for r in runs]}))
                return
            now = store.now()
            out.print(f"[bold]{job.name}[/bold]  [cyan]{job.id}[/cyan]")
            kind = {"cron": "cron", "interval": "every", "once": "at"}[job.kind]
            out.print(f"  schedule  {job.describe()}  [dim]({kind} {job.expr})[/dim]")
            out.print(f"  next run  {_next_text(job, now)}")
            out.print(f"  catch-up  {job.catch_up or 'from settings (schedule.catch_up)'}")
            out.print(f"  notify    {'yes' if job.notify else 'no'}")
            if job.group_claim:
                out.print(f"  claim     {job.group_claim}  [dim](runs once across the group)[/dim]", markup=True)
            out.print(f"  thread    {job.session_id}  [dim](shoal timeline -s {job.session_id})[/dim]")
            out.print("  prompt")
            out.print(f"    {job.prompt}", markup=False)
            out.print()
            _print_runs(runs, now, with_job=False)
            if not runs:
                out.print(f"[dim]No runs yet. {RUNS_NOTE}[/dim]")

    run_async(main())


def _print_runs(runs: list[Any], now: Any, *, with_job: bool) -> None:
    from core.schedule.spec import MISSED_CAP
    from core.schedule.words import when

    if not runs:
        return
    columns = ["when", *(["job"] if with_job else []), "trigger", "status", "took", "result"]
    table = Table(*columns, box=None)
    for run in runs:
        moment = run.started_at or run.created_at  # when it ran, or was recorded (the rows' order)
        took = f"{run.duration_s:.1f} s" if run.duration_s is not None else ""
        status = _status(run.status) + (f" ×{run.count:,}{'+' * (run.count >= MISSED_CAP)}" if run.count > 1 else "")
        result = render.short(run.error or run.summary, 70) if run.status != "ok" else render.short(run.summary, 70)
        cells = [when(moment, now=now), *([render.short(run.job_name, 24)] if with_job else [])]
        trigger = "—" if run.status == "missed" else run.trigger.replace("_", "-")
        table.add_row(*cells, trigger, status, took, result.replace("[", r"\["))
    out.print(table)


def _toggle(obj: Context, job_id: str, enabled: bool) -> None:
    async def main() -> None:
        async with _store(obj) as store:
            job = await store.set_enabled(job_id, enabled)
            what = f"[cyan]{job.short_id}[/cyan] [bold]{job.name}[/bold]"
            if enabled:
                out.print(f"Enabled {what}; next run {_next_text(job, store.now())}")
            else:
                out.print(f"Disabled {what}: it keeps its history and runs again once enabled.")

    run_async(main())


@schedule.command("enable")
@click.argument("job_id")
@click.pass_obj
def enable(obj: Context, job_id: str) -> None:
    """Run the job on its schedule again (from its next time after now)."""
    _toggle(obj, job_id, True)


@schedule.command("disable")
@click.argument("job_id")
@click.pass_obj
def disable(obj: Context, job_id: str) -> None:
    """Keep the job but stop running it."""
    _toggle(obj, job_id, False)


@schedule.command("remove")
@click.argument("job_id")
@click.pass_obj
def remove(obj: Context, job_id: str) -> None:
    """Delete a job and its run history (its thread and timeline stay)."""

    async def main() -> None:
        async with _store(obj) as store:
            job = await store.remove(job_id)
            what = f"[cyan]{job.short_id}[/cyan] [bold]{job.name}[/bold]"
            out.print(f"Removed {what}. Its thread stays in `shoal sessions`.")

    run_async(main())


@schedule.command("history")
@click.argument("job_id", required=False)
@click.option("-n", "--limit", default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history(obj: Context, job_id: str | None, limit: int, as_json: bool) -> None:
    """Recent runs, of one job or of all: when, how they were triggered, how they went."""

    async def main() -> None:
        async with _store(obj) as store:
            resolved = (await store.get(job_id)).id if job_id else None
            runs = await store.runs(resolved, limit)
            if as_json:
                click.echo(json.dumps([run.to_dict() for run in runs]))
                return
            if not runs:
                out.print(f"No runs yet. {RUNS_NOTE}")
            _print_runs(runs, store.now(), with_job=resolved is None)

    run_async(main())


@schedule.command("run")
@click.argument("job_id")
@click.option("-y", "--yes", is_flag=True, help="approve high-risk tool calls without asking")
@click.option("--json", "as_json", is_flag=True, help="print every event as one JSON object per line")
@click.pass_obj
def run(obj: Context, job_id: str, yes: bool, as_json: bool) -> None:
    """Run a job now, in the foreground: streams the answer like `shoal agent` and records the run."""
    from app.cli import _exit_code
    from app.wiring import build_core

    async def main() -> int:
        async with build_core(obj.settings(), approval_prompt(yes)) as core:
            printer = render.JsonPrinter() if as_json else render.TurnPrinter(verbose=obj.verbose)
            finals: list[ev.AgentEvent] = []

            def handle(event: ev.AgentEvent) -> None:
                if isinstance(event, ev.TurnFinished | ev.TurnFailed):
                    finals.append(event)
                printer.handle(event)

            try:
                done = await core.schedule.run_now(job_id, on_event=handle)
            finally:
                printer.close()
            if done.status == "failed" and not finals:  # it failed before the turn started
                message, _, fix = (done.error or "The run failed.").partition("\n  → ")
                render.err.print(f"[red bold]Error[/red bold]: {message}", markup=True)
                if fix:
                    render.err.print(f"  [cyan]→ {fix}[/cyan]")
            if not as_json:
                render.err.print(f"[dim]run {done.id[-8:]} of {done.job_name}: {done.status}[/dim]")
            return _exit_code(finals[-1]) if finals else (0 if done.status == "ok" else 1)

    sys.exit(run_async(main()))
