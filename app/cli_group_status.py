"""`shoal group status`: the connection, the roster and the consumer lag of this machine's agent, from outside.

A short-lived member of its own (like `group members`) tells the connection state and the roster; its own
consumer group would say nothing about lag, so the lag shown is the *committed* lag of the agent's groups
read from the broker (core/group/lag_report.py): its inbox group `shoal.<group>.agent.<agentid>` (the id kept
for this data folder, or `--agent-id`) and the queue group of each skill (`group.skills`, or `--skill`).
Rows over `group.lag_warn_messages` / `group.lag_warn_seconds` are marked WARN (docs/lag.md).
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from app.cli import Context, run_async
from app.cli_group import _joined_core, group
from core.settings import LoadedSettings

out = Console(highlight=False)


@group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.option("--agent-id", "agent_ids", multiple=True, help="an agent whose inbox lag to show (default: this one)")
@click.option("--skill", "skills", multiple=True, help="a skill queue whose lag to show (default: group.skills)")
@click.pass_obj
def status(obj: Context, as_json: bool, wait: float, agent_ids: tuple[str, ...], skills: tuple[str, ...]) -> None:
    """Connection, roster size and consumer lag (records and seconds behind) of this agent's consumer groups."""
    from core.group.identity import stored_agent_id
    from core.group.lag_report import agent_group, committed_lag, skill_group
    from core.group.node import INBOX_TOPICS, REPLAYED_TOPICS

    loaded = obj.settings()
    settings = loaded.settings.group
    ids = list(agent_ids) or [a for a in [stored_agent_id(settings.name, str(loaded.settings.paths.data_path()))] if a]
    committed = tuple(t for t in INBOX_TOPICS if t not in REPLAYED_TOPICS)  # the others are never committed
    groups = [agent_group(settings, a, committed) for a in ids]
    groups += [skill_group(settings, s) for s in (list(skills) or [s.name for s in settings.skills])]

    async def main() -> dict[str, Any]:
        core = await _observer_core(loaded, wait)
        try:
            node = core.group.node
            own = node.agent_id
            members = [m for m in core.group.members() if m.agentid != own]
            state = node.state
        finally:
            await core.stop()
        rows = await committed_lag(settings, groups, timeout=wait)
        online = {m.agentid for m in members}
        return {
            "group": settings.name,
            "servers": list(settings.bootstrap_servers),
            "connection": state,
            "members": len(members),
            "agents": [{"agentid": a, "online": a in online} for a in ids],
            "limits": {
                "messages": settings.lag_warn_messages,
                "seconds": settings.lag_warn_seconds,
                "after": settings.lag_warn_after,
            },
            "consumer_groups": [g.id for g in groups],
            "lag": [row.to_dict() for row in rows],
            "warnings": sum(row.warning for row in rows),
        }

    report = run_async(main())
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)


async def _observer_core(loaded: LoadedSettings, wait: float) -> Any:
    """A short-lived member that only looks: a fresh identity, no committed offsets, and no skills (it must
    never join a skill queue's group and take a task, nor shift that group's partitions)."""
    loaded.settings.group.skills = []
    return await _joined_core(loaded, wait)


def _print(report: dict[str, Any]) -> None:
    agents = ", ".join(
        f"{a['agentid'][:12]} {'online' if a['online'] else 'not in the roster'}" for a in report["agents"]
    )
    out.print(
        f"group [bold]{report['group']}[/bold] · {report['connection']} · {report['members']} member"
        f"{'s' * (report['members'] != 1)}" + (f" · agent {agents}" if agents else " · no agent id for this folder")
    )
    if not report["lag"]:
        out.print(
            "[dim]No committed offsets yet for " + (", ".join(report["consumer_groups"]) or "any group") + ".[/dim]"
        )
        return
    table = Table("consumer group", "topic", "part.", "committed", "end", "behind", "seconds", "")
    for row in report["lag"]:
        table.add_row(
            row["group"],
            row["topic"],
            str(row["partition"]),
            _text(row["committed"]),
            _text(row["end"]),
            _text(row["messages"]),
            "—" if row["seconds"] is None else f"{row['seconds']:.1f}",
            "[bold yellow]WARN[/bold yellow]" if row["warning"] else "",
        )
    out.print(table)
    limits = report["limits"]
    if report["warnings"]:
        out.print(
            f"[yellow]{report['warnings']} partition(s) over the lag limits ({limits['messages']} records, "
            f"{limits['seconds']:g} s).[/yellow]"
        )


def _text(value: int | None) -> str:
    return "—" if value is None else str(value)
