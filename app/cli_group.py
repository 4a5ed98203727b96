"""`shoal group …`, `shoal dispatch`, `shoal trace`: group mode from the terminal.

`group run` is a headless member (it serves its skills until stopped). `dispatch` and `members` join as a
short-lived member of their own (a fresh identity, nothing committed), so they never fight the desktop
app of the same machine over its consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from app import render
from app.cli import Context, cli, run_async
from app.cli_kshark import kshark_options, run_report
from app.wiring import build_core
from core.errors import UserError
from core.policy.labels import NAMES as LABELS
from core.settings import LoadedSettings

out = Console(highlight=False)


@cli.group()
def group() -> None:
    """Group mode: join a Kafka group of agents, see who is there, test the connection."""


def _joined(loaded: LoadedSettings) -> LoadedSettings:
    loaded.settings.group.enabled = False  # the command joins itself (ephemeral or not) once the core is up
    return loaded


async def _joined_core(loaded: LoadedSettings, wait: float, **join: Any) -> Any:
    """A started core, joined to its group as a short-lived member (`join`: see AgentCore.join_group), online
    and past the roster's history; stopped again if any of that fails."""
    core = build_core(_joined(loaded))
    await core.start()
    try:
        runtime = await core.join_group(ephemeral=True, **join)
        await runtime.node.wait_online(wait)
        await runtime.node.roster_caught_up(wait)
    except BaseException:
        await core.stop()
        raise
    return core


async def _ephemeral_core(obj: Context, wait: float, *, admit: bool = True, needed: float = 0.0) -> Any:
    """A short-lived member for one command. `admit`: in a closed group, this machine's membership admits the
    session (a record kept on the control topic), which a command needs to send; one that only reads passes
    False and stays unannounced. A kept session is reused when it lasts `needed` seconds more (and a margin)."""
    core = await _joined_core(obj.settings(), wait, reuse_session=admit, session_needed=needed)
    if admit:
        try:
            await core.group.admit_session(wait)  # a closed group admits this short-lived session first
        except BaseException:
            await core.stop()
            raise
    return core


@group.command("members")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.pass_obj
def members(obj: Context, as_json: bool, wait: float) -> None:
    """The live roster: every member heard from within three heartbeats."""

    async def main() -> None:
        from core.group.hierarchy import placement, tree

        core = await _ephemeral_core(obj, wait, admit=False)
        try:
            own, members = core.group.node.agent_id, core.group.members()
            limit = core.settings.group.max_hierarchy_depth
            cards = [  # in tree order: each parent followed by its children
                {**m.card(), **placement(m, members, limit)} for m, _depth in tree(members) if m.agentid != own
            ]
        finally:
            await core.stop()
        if as_json:
            print(json.dumps(cards, indent=2))
            return
        table = Table("name", "agent id", "skills", "model", "status", "tasks", "zone", "last seen", "parent")
        for card in cards:
            skills = ", ".join(s["name"] for s in card["skills"]) or "—"
            table.add_row(
                _tree_name(card),
                card["agentid"][:12],
                skills,
                card["model"] or "—",
                card["status"],
                str(card["activetasks"]),
                card["zone"],
                card["lastseen"][11:19],
                _parent_text(card),
            )
        out.print(table if cards else "[dim]No members are online in this group.[/dim]")

    run_async(main())


def _tree_name(card: dict[str, Any]) -> str:
    """The name indented by its depth in the hierarchy, with the orchestrator badge."""
    badge = " [bold magenta]★ orchestrator[/bold magenta]" if card.get("orchestrator") else ""
    indent = "  " * max(0, int(card.get("depth") or 0) - 1) + ("└ " if card.get("depth") else "")
    return f"{indent}{card['name']}{badge}"


def _parent_text(card: dict[str, Any]) -> str:
    """Its parent's name (by default: the only orchestrator), or why it is not a valid child."""
    if card.get("hierarchyproblem"):
        return f"[red]{card['hierarchyproblem']}[/red]"
    name = str(card.get("parentname") or "")
    if name and not card.get("effectiveparent"):
        return f"{name} [dim](not in the roster)[/dim]"
    return f"{name} [dim](default)[/dim]" if name and card.get("parentbydefault") else name or "—"


@group.command("run")
@click.option("-y", "--yes", is_flag=True, help="approve high-risk tool calls of remote tasks (default: deny)")
@click.pass_obj
def run_member(obj: Context, yes: bool) -> None:
    """Run this agent headless as a group member until Ctrl+C / SIGTERM (serves its skills)."""
    from app.cli import approval_prompt

    loaded = obj.settings()
    if not loaded.settings.group.skills:
        render.err.print("[yellow]This agent offers no skills (group.skills): it will only be seen.[/yellow]")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        async with build_core(_joined(loaded), approval_prompt(yes)) as core:
            runtime = await core.join_group()
            node = runtime.node
            node.add_state_listener(
                lambda state, err: render.err.print(f"group {state}" + (f": {err.message}" if err else ""))
            )
            node.roster.add_listener(lambda change, m: render.err.print(f"{change}: {m.name} ({m.agentid[:12]})"))
            render.err.print(f"[bold]{node.name}[/bold] joining group {node.group_name} as {node.agent_id}")
            await stop.wait()
            render.err.print("leaving the group…")

    run_async(main())


@group.command("test")
@kshark_options
@click.pass_obj
def test_connection(
    obj: Context, as_json: bool, bootstrap: tuple[str, ...], timeout: float, no_probe: bool, strict: bool
) -> None:
    """The same report as `shoal kshark` (an alias): every step to the group's brokers, one line each."""
    run_report(obj, as_json=as_json, bootstrap=bootstrap, timeout=timeout, probe=not no_probe, strict=strict)


@group.command("set-password")
@click.option("--password", prompt=True, hide_input=True, help="the SASL password (prompted when omitted)")
@click.pass_obj
def set_password(obj: Context, password: str) -> None:
    """Store the group's SASL password in the OS keyring (never in the config file)."""
    from core.group.kafka_config import set_group_password

    name = obj.settings().settings.group.name
    set_group_password(name, password)
    out.print(f"Stored the SASL password for group {name} in the keyring.")


@cli.command()
@click.argument("text")
@click.option("--skill", default="", help="send to this skill's work queue")
@click.option("--to", "to", default="", help="send to this agent (name or id)")
@click.option("--children", is_flag=True, help="send to this agent's least busy child (with --skill: one offering it)")
@click.option("--zone", default="", help="a private zone: sealed for its members, taken by one of them")
@click.option("--deadline", type=float, help="seconds the task may take (default: group.task_deadline)")
@click.option("--json", "as_json", is_flag=True, help="print progress and result as JSON lines")
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.option("--label", type=click.Choice(LABELS), help="the task's label (default: classifier rules, else default)")
@click.pass_obj
def dispatch(
    obj: Context,
    text: str,
    skill: str,
    to: str,
    children: bool,
    deadline: float | None,
    as_json: bool,
    wait: float,
    label: str | None,
    zone: str,
) -> None:
    """Send a task to the group and stream its answer (exit 0 when it succeeded). The policy must let the task's
    label go to the peer (see `shoal policy check --action peer`). `--children` addresses it to one of this
    agent's children in the group's hierarchy (docs/hierarchy.md)."""
    if children and to:
        raise click.UsageError("--children picks the child itself: drop --to")
    if not children and bool(skill) == bool(to):
        raise click.UsageError("give exactly one of --skill or --to (or --children)")

    async def main() -> int:
        needed = deadline if deadline is not None else obj.settings().settings.group.task_deadline
        core = await _ephemeral_core(obj, wait, needed=needed)  # a kept session must outlast the task
        try:
            handle = await core.group.dispatch(
                text, skill=skill, to=to, deadline=deadline, label=label, to_children=children, zone=zone
            )
            if not as_json:
                child = core.group.node.roster.get(handle.recipient) if children else None
                where = f"child {child.name}" + (f" (skill {skill})" if skill else "") if child else skill or to
                render.err.print(f"[dim]task {handle.taskid} → {where}[/dim]")
            result, streamed = None, False
            async for update in handle:
                if as_json:
                    print(json.dumps({"kind": type(update).__name__, **vars(update)}), flush=True)
                elif hasattr(update, "delta") and update.delta:
                    print(update.delta, end="", flush=True)
                    streamed = True
                elif getattr(update, "state", "") == "accepted":
                    render.err.print(f"[dim]accepted by {update.agent.get('name') or update.agent['agentid']}[/dim]")
                result = update
            return _report(result, as_json, streamed)
        finally:
            await core.stop()

    sys.exit(run_async(main()))


def _report(result: Any, as_json: bool, streamed: bool) -> int:
    if as_json or result is None:
        return 0 if result is not None and result.ok else 1
    if result.ok:
        text = "" if streamed else result.output  # streamed progress already printed the answer
        print(text if text.endswith("\n") else text + "\n", end="")
        return 0
    render.print_error(
        {"message": f"task {result.status}: {result.error.get('message', '')}", "fix": "", "actor": "network"}
    )
    return 1


@cli.command()
@click.argument("correlation")
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", default=15.0, show_default=True)
@click.pass_obj
def trace(obj: Context, correlation: str, as_json: bool, timeout: float) -> None:
    """Rebuild a decision across agents from the group's audit topic, as a tree."""
    from core.group.trace import build_tree, collect

    settings = obj.settings().settings.group

    async def main() -> int:
        records, names = await collect(settings, correlation, timeout=timeout)
        if not records:
            raise UserError(
                f"No audit records for correlation {correlation!r} in group {settings.name}.",
                "Check the id (shoal dispatch prints the task id) and the group name.",
            )
        roots = build_tree(records, names)
        if as_json:
            print(json.dumps([r.to_dict() for r in roots], indent=2))
            return 0
        tree = Tree(f"[bold]correlation {correlation}[/bold]")
        for root in roots:
            _add(tree, root)
        out.print(tree)
        return 0

    sys.exit(run_async(main()))


def _add(parent: Tree, node: Any) -> None:
    branch = parent.add(_label(node))
    for child in node.children:
        _add(branch, child)


def _label(node: Any) -> str:
    record = node.record
    who = f"[cyan]{node.agent}[/cyan]"
    action = record.get("action")
    if action == "step":
        step = record.get("step", {})
        extra = f" {step.get('durationms')} ms" if step.get("durationms") is not None else ""
        model = f" [{step['model']}]" if step.get("model") else ""
        return f"{who} {step.get('kind')} {step.get('name') or ''}{model} ({step.get('status')}){extra}"
    envelope = record.get("envelope", {})
    arrow = {"sent": "→ sent", "received": "← received", "dropped": "✕ dropped"}.get(str(action), str(action))
    reason = f" ({record.get('reason')})" if action == "dropped" else ""
    return f"{who} {arrow} {envelope.get('type', '')}{reason}"
