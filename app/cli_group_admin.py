"""`shoal group create | join | revoke | membership`: founding a closed group and managing who is in it.

`create` and `join` speak with this machine's own group identity (the one the desktop and `shoal group run`
use), so the agent admitted is the agent that later runs; `revoke` and `membership` run as a session
admitted by it. See docs/groups.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
from rich.table import Table

from app.cli import Context, run_async
from app.cli_group import _ephemeral_core, _joined_core, group, out
from core.errors import UserError
from core.settings import LoadedSettings


async def _own_identity_core(loaded: LoadedSettings, wait: float) -> Any:
    """A core joined as this machine's persistent identity, as a short-lived member (nothing committed)."""
    from core.group.identity import load_or_create

    settings = loaded.settings
    scope = str(settings.paths.data_path())
    identity = await asyncio.to_thread(load_or_create, settings.group.name, scope)
    return await _joined_core(loaded, wait, identity=identity)


def _previous(obj: Context) -> dict[str, Any]:
    """The group settings `_save_group` changes, as they are now (to put back when founding or joining fails)."""
    group = obj.settings().settings.group
    return {
        "group.name": group.name,
        "group.bootstrap_servers": group.bootstrap_servers,
        "group.security_protocol": group.security_protocol,
        "group.enabled": group.enabled,
    }


def _put_back(obj: Context, previous: dict[str, Any]) -> None:
    from core.setup import SetupService

    SetupService(obj.settings()).save_many(previous)


def _save_group(obj: Context, name: str, bootstrap: list[str], protocol: str) -> LoadedSettings:
    from core.setup import SetupService

    values = {
        "group.name": name,
        "group.bootstrap_servers": bootstrap,
        "group.security_protocol": protocol,
        "group.enabled": True,
    }
    SetupService(obj.settings()).save_many(values)
    return obj.settings()


@group.command("create")
@click.argument("name")
@click.option("--bootstrap", "bootstrap", multiple=True, help="host:port of a broker (default: the configured ones)")
@click.option("--force", is_flag=True, help="found the group even if agents already announce under this name")
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.pass_obj
def create(obj: Context, name: str, bootstrap: tuple[str, ...], force: bool, wait: float) -> None:
    """Found a closed group: make its join secret, admit this agent as founder, print the invite ONCE."""
    from core.group import founding
    from core.group.invite import forget_invite

    current = obj.settings().settings.group
    servers = list(bootstrap) or current.bootstrap_servers
    previous = _previous(obj)
    loaded = _save_group(obj, name, servers, current.security_protocol)
    scope = str(loaded.settings.paths.data_path())

    async def main() -> str:
        invite = await founding.make_invite(name, scope, servers, current.security_protocol)
        try:
            core = await _own_identity_core(loaded, wait)
            try:
                await founding.found(core.group.node, force=force, wait=wait)
            finally:
                await core.stop()
        except BaseException:
            forget_invite(name, scope)  # nothing half-founded stays behind
            raise
        return invite.code()

    try:
        code = run_async(main())
    except BaseException:
        _put_back(obj, previous)  # a failed founding leaves the settings as they were
        raise
    out.print(f"Founded group [bold]{name}[/bold]; this agent is its founder.\n")
    out.print("Invite code (shown once; anyone holding it can ask to join):\n")
    print(code)
    out.print("\nOn the other machine: [bold]shoal group join <code>[/bold]. Keep a member running to let it in")
    out.print("(the desktop app with group mode on, or `shoal group run`).")


@group.command("join")
@click.argument("code", required=False)
@click.option("--name", "agent_name", default="", help="how peers see this agent (default: the host name)")
@click.option("--timeout", type=float, help="seconds to wait for a member to answer (default: group.join_timeout)")
@click.pass_obj
def join(obj: Context, code: str | None, agent_name: str, timeout: float | None) -> None:
    """Join a closed group with an invite code: prove the secret, get admitted, switch group mode on. Without
    CODE it is asked for (hidden), so the secret stays out of the shell history and the process list."""
    from core.group.invite import Invite, forget_invite, store_invite

    invite = Invite.parse(code or click.prompt("Invite code", hide_input=True))
    previous = _previous(obj)
    loaded = _save_group(obj, invite.group, list(invite.bootstrap), invite.security_protocol)
    if agent_name:
        from core.setup import SetupService

        SetupService(loaded).save("group.agent_name", agent_name)
        loaded = obj.settings()
    scope = str(loaded.settings.paths.data_path())
    store_invite(invite, scope)
    limit = timeout or loaded.settings.group.join_timeout

    async def main() -> Any:
        core = await _own_identity_core(loaded, min(limit, 30.0))
        try:
            return await core.group.node.onboarding.join(limit)
        finally:
            await core.stop()

    try:
        admission = run_async(main())
    except BaseException:
        forget_invite(invite.group, scope)  # a refused join keeps no secret behind, and the settings as they were
        _put_back(obj, previous)
        raise
    out.print(f"Admitted to group [bold]{invite.group}[/bold] as {admission.name} ({admission.agentid[:12]}).")
    out.print("Group mode is on: start the app, or `shoal group run` for a headless member.")


@group.command("revoke")
@click.argument("agent")
@click.option("--reason", default="", help="recorded with the revocation")
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.pass_obj
def revoke(obj: Context, agent: str, reason: str, wait: float) -> None:
    """Remove an agent (name or id prefix) from the group, for good: members ignore it from then on."""

    async def main() -> str:
        core = await _ephemeral_core(obj, wait)
        try:
            node = core.group.node
            target = _find_member(node.membership.rows(), agent)
            await node.onboarding.revoke(target["agentid"], reason)
            from core.group.onboarding_admin import read_back

            await read_back(lambda: target["agentid"] in node.membership.revoked, wait)
        finally:
            await core.stop()
        return f"{target.get('name') or '?'} ({target['agentid'][:12]})"

    out.print(f"Removed {run_async(main())} from the group.")


@group.command("membership")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the broker")
@click.pass_obj
def membership(obj: Context, as_json: bool, wait: float) -> None:
    """Who was admitted (by whom, when), who was removed, and who asked to join but is not in."""

    async def main() -> tuple[bool, list[dict[str, Any]]]:
        core = await _ephemeral_core(obj, wait, admit=False)
        try:
            ms = core.group.node.membership
            rows = ms.rows() + [{"agentid": a, "name": n, "status": "pending"} for a, n in ms.held()]
            return ms.enforced, [r for r in rows if r.get("role") != "ephemeral"]
        finally:
            await core.stop()

    closed, rows = run_async(main())
    if as_json:
        print(json.dumps({"closed": closed, "members": rows}, indent=2))
        return
    if not closed:
        out.print("This group is open (no join secret here): everyone who announces takes part.")
        return
    table = Table("name", "agent id", "status", "role", "admitted by", "since")
    for row in rows:
        table.add_row(
            row.get("name", ""),
            row["agentid"][:12],
            row["status"],
            row.get("role", ""),
            str(row.get("admittedby", row.get("by", "")))[:12],
            row.get("admittedat", row.get("at", "")),
        )
    out.print(table)


def _find_member(rows: list[dict[str, Any]], agent: str) -> dict[str, Any]:
    matches = [r for r in rows if r.get("name") == agent or r["agentid"] == agent]
    matches = matches or [r for r in rows if len(agent) >= 6 and r["agentid"].startswith(agent)]
    if len(matches) != 1:
        raise UserError(f"No single member matches {agent!r}.", "See the names and ids: shoal group membership")
    return matches[0]
