"""`shoal zone …`, `shoal get agents|zones`, `shoal describe agent X`: the live picture of who is in the group,
in which zones, under whom (docs/groups.md). Each joins for a moment as a session of this machine's member."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from app.cli import Context, cli, run_async
from app.cli_get import describe, get, out
from app.cli_group import _ephemeral_core
from core.errors import UserError


@cli.group("zone")
def zone() -> None:
    """Private zones: define who may see a zone's tasks and memory (the founder only)."""


async def _with_group(obj: Context, wait: float, action: Any, *, admit: bool = False) -> Any:
    core = await _ephemeral_core(obj, wait, admit=admit)
    try:
        return await action(core.group.node)
    finally:
        await core.stop()


def _resolve(node: Any, who: str) -> str:
    """An agent id from a name or id prefix, among admitted members and the live roster."""
    rows = [(r["agentid"], r.get("name", "")) for r in node.membership.rows() if r.get("role") != "ephemeral"]
    rows += [(m.agentid, m.name) for m in node.members() if "ephemeral" not in m.capabilities]
    hits = {a for a, n in rows if n == who or a == who} or {a for a, _ in rows if len(who) >= 6 and a.startswith(who)}
    if len(hits) != 1:
        raise UserError(f"No single member matches {who!r}.", "See them: shoal group membership")
    return hits.pop()


def _change_zone(obj: Context, name: str, wait: float, change: Any, description: str | None = None) -> list[str]:
    async def action(node: Any) -> list[str]:
        current = node.zones.get(name)
        members = list(current.members) if current is not None and current.kind == "private" else []
        wanted = change(node, members)
        text = description if description is not None else (current.description if current else "")
        await node.onboarding.define_zone(name, wanted, text)
        from core.group.onboarding_admin import read_back

        await read_back(lambda: list(getattr(node.zones.get(name), "members", ())) == wanted, wait)
        return wanted

    result: list[str] = run_async(_with_group(obj, wait, action, admit=True))  # it publishes as the founder
    return result


@zone.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, required=True, help="a member (name or id); repeat")
@click.option("--description", default="")
@click.option("--wait", default=15.0, show_default=True)
@click.pass_obj
def zone_create(obj: Context, name: str, members: tuple[str, ...], description: str, wait: float) -> None:
    """Create (or redefine) private zone NAME with exactly these members."""
    listed = _change_zone(obj, name, wait, lambda node, _old: [_resolve(node, m) for m in members], description)
    out.print(f"Zone [bold]{name}[/bold]: {len(listed)} members; its payloads are sealed for them alone.")


@zone.command("add")
@click.argument("name")
@click.argument("agent")
@click.option("--wait", default=15.0, show_default=True)
@click.pass_obj
def zone_add(obj: Context, name: str, agent: str, wait: float) -> None:
    """Add AGENT to private zone NAME (it reads what is sent from now on)."""
    _change_zone(obj, name, wait, lambda node, old: list(dict.fromkeys([*old, _resolve(node, agent)])))
    out.print(f"Added {agent} to zone {name}.")


@zone.command("remove")
@click.argument("name")
@click.argument("agent")
@click.option("--wait", default=15.0, show_default=True)
@click.pass_obj
def zone_remove(obj: Context, name: str, agent: str, wait: float) -> None:
    """Remove AGENT from private zone NAME (what it already received stays readable to it)."""
    left = _change_zone(obj, name, wait, lambda node, old: [a for a in old if a != _resolve(node, agent)])
    out.print(f"Removed {agent} from zone {name}." + ("" if left else " The zone is now gone (no members)."))


@get.command("zones")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", default=15.0, show_default=True)
@click.pass_obj
def get_zones(obj: Context, as_json: bool, wait: float) -> None:
    """Every zone: public, shared, and the private ones with their members."""

    async def action(node: Any) -> list[dict[str, Any]]:
        names = {r["agentid"]: r.get("name", "") for r in node.membership.rows()}
        names.update({m.agentid: m.name for m in node.members()})
        return [z.row(names) for z in node.zones.all()]

    rows = run_async(_with_group(obj, wait, action))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("zone", "kind", "members", "description")
    for row in rows:
        members = ", ".join(m["name"] or m["agentid"][:12] for m in row["members"]) or "—"
        table.add_row(row["zone"], row["kind"], members if row["kind"] == "private" else "(all)", row["description"])
    out.print(table)


def _agent_rows(node: Any) -> list[dict[str, Any]]:
    """Live members with their membership status, zones, parent and current work."""
    from core.group.hierarchy import placement

    members = node.members()
    limit = node.settings.max_hierarchy_depth
    rows = []
    for member in members:
        if "ephemeral" in member.capabilities:
            continue
        card = member.card()
        card["membership"] = node.membership.status(member.agentid)
        card["zones"] = node.zones.zones_of(member.agentid)
        rows.append({**card, **placement(member, members, limit)})
    return rows


@get.command("agents")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", default=15.0, show_default=True)
@click.pass_obj
def get_agents(obj: Context, as_json: bool, wait: float) -> None:
    """The live members: status, membership, zones, parent, skills."""
    rows = run_async(_with_group(obj, wait, lambda node: _async(_agent_rows(node))))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "agent id", "status", "member", "role", "zones", "parent", "skills")
    for row in rows:
        skills = ", ".join(s["name"] for s in row.get("skills", [])) or "—"
        parent = row.get("parentname") or row.get("parent") or "—"
        table.add_row(
            row["name"],
            row["agentid"][:12],
            row["status"],
            row["membership"],
            row.get("role") or "member",
            ", ".join(row["zones"]),
            str(parent)[:20],
            skills,
        )
    out.print(table)


@describe.command("agent")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", default=15.0, show_default=True)
@click.pass_obj
def describe_agent(obj: Context, agent: str, as_json: bool, wait: float) -> None:
    """One agent in full: its card, membership (admitted by whom, when), zones, place in the hierarchy."""

    async def action(node: Any) -> dict[str, Any]:
        agentid = _resolve(node, agent)
        live = next((r for r in _agent_rows(node) if r["agentid"] == agentid), None)
        admission: dict[str, Any] = next((r for r in node.membership.rows() if r["agentid"] == agentid), {})
        return {
            "agentid": agentid,
            "live": live is not None,
            "card": live or {},
            "admission": admission,
            "membership": node.membership.status(agentid),
            "zones": node.zones.zones_of(agentid),
        }

    info = run_async(_with_group(obj, wait, action))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    card, admission = info["card"], info["admission"]
    out.print(f"[bold]{card.get('name') or admission.get('name') or '?'}[/bold]  {info['agentid']}")
    out.print(f"  live:        {'yes, ' + card.get('status', '') if info['live'] else 'no (not heard from lately)'}")
    out.print(f"  membership:  {info['membership']}  {_admitted_line(admission)}")
    out.print(f"  zones:       {', '.join(info['zones']) or '—'}")
    if card:
        out.print(f"  role:        {card.get('role') or 'member'}   parent: {card.get('parentname') or '—'}")
        skills = ", ".join(f"{s['name']} ({s.get('description', '')})" for s in card.get("skills", []))
        out.print(f"  skills:      {skills or '—'}")
        out.print(f"  model:       {card.get('model') or '—'}   version: {card.get('version', '')}")
        for task in card.get("tasks") or []:
            out.print(f"  working on:  {task.get('taskid', '')[:12]} {task.get('skill', '')} {task.get('message', '')}")


def _admitted_line(admission: dict[str, Any]) -> str:
    if admission.get("admittedat"):
        return f"(admitted {admission['admittedat']} by {str(admission.get('admittedby', ''))[:12]})"
    if admission.get("at"):
        return f"(removed {admission['at']}: {admission.get('reason', '')})"
    return ""


async def _async(value: Any) -> Any:
    return value
