"""Closed groups for the widgets (docs/groups.md): found one, join one with an invite code, who is in it, remove
a member, define a private zone. Part of the group bridge: owned by `GroupBridge` as `bridge.group.admin`, and
with `ui/group_bridge.py` the only UI module that calls into `core.group` (lazily: aiokafka stays unloaded).

Founding and joining take the steps `shoal group create|join` take (core/group/founding.py), but on this app's
own runtime rather than on a short-lived member: the join secret goes to the keyring, the group settings are
written and applied the way the Connect-to-group dialog applies them (so the runtime restarts holding the
secret), and only then does the founder admit itself or the newcomer run the handshake. A failure or refusal
keeps nothing behind: the secret leaves the keyring and the group settings are restored.

Changes to the control topic (revocations, zones) take effect when read back, as on every member, so the
commands wait for that before they return.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.group.onboarding_admin import read_back
from core.settings import GroupSettings
from ui.group_form import changed_values

if TYPE_CHECKING:
    from ui.group_bridge import GroupBridge

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
SNAPSHOT_KEYS = ("name", "bootstrap_servers", "security_protocol", "agent_name", "enabled")
CONNECT_WAIT = 20.0  # seconds to reach the brokers and read the group's history before founding or joining


@dataclass(frozen=True)
class MembershipView:
    """Who is in the group, for the group pane; `closed` is False in an open group (everyone takes part)."""

    closed: bool = False
    admin: bool = False  # this agent is the founder: it removes members and defines zones
    status: dict[str, str] = field(default_factory=dict)  # agent id -> admitted | pending | revoked | expired | open
    zones_of: dict[str, list[str]] = field(default_factory=dict)  # agent id -> the zones it may see
    pending: list[dict[str, str]] = field(default_factory=list)  # agentid, name: asked to join, not admitted
    removed: list[dict[str, str]] = field(default_factory=list)  # agentid, name, reason, by, byname, at
    members: list[dict[str, str]] = field(default_factory=list)  # agentid, name: admitted, live or not
    zones: list[dict[str, Any]] = field(default_factory=list)  # `Zone.row()`: zone, kind, members, description


class GroupAdmin:
    def __init__(self, group: GroupBridge) -> None:
        self.group = group

    @property
    def core(self) -> Any:
        return self.group.core

    # --- queries -------------------------------------------------------------------------------

    def membership(self) -> MembershipView:
        runtime = self.core.group
        if runtime is None or runtime.node.zones is None:
            return MembershipView()
        node, ms = runtime.node, runtime.node.membership
        rows = [r for r in ms.rows() if r.get("role") != "ephemeral"]  # command-line sessions come and go
        names = {r["agentid"]: r.get("name", "") for r in rows} | {m.agentid: m.name for m in node.members()}
        held = [{"agentid": a, "name": n} for a, n in ms.held()]
        ids = set(names) | {h["agentid"] for h in held}
        return MembershipView(
            ms.enforced,
            ms.is_admin(node.agent_id),
            {a: ms.status(a) for a in ids},
            {a: node.zones.zones_of(a) for a in ids},
            held,
            [{"agentid": a, **info, "byname": names.get(info.get("by", ""), "")} for a, info in ms.revoked.items()],
            [{"agentid": r["agentid"], "name": r.get("name", "")} for r in rows if r["status"] == "admitted"],
            [zone.row(names) for zone in node.zones.all()],
        )

    @staticmethod
    def read_invite(code: str) -> dict[str, Any]:
        """What an invite code says (group, servers, founder), never its secret; UserError if it is not one."""
        from core.group.invite import Invite

        invite = Invite.parse(code)
        return {
            "group": invite.group,
            "servers": list(invite.bootstrap),
            "protocol": invite.security_protocol,
            "founder": invite.founder,
        }

    def zone_problem(self, name: str) -> str:
        """Why `name` cannot be a new private zone ("" when it can)."""
        from core.group.zones import BUILTIN, ZONE_NAME

        runtime = self.core.group
        zones = runtime.node.zones if runtime is not None else None
        if name in BUILTIN or (zones is not None and zones.get(name) is not None):
            return f"There is already a zone called {name}."
        if not ZONE_NAME.fullmatch(name):
            return "Use 1–63 lowercase letters, digits, - or _, starting with a letter or digit."
        return ""

    # --- founding and joining --------------------------------------------------------------------

    async def create_closed_group(
        self,
        name: str,
        servers: Any,
        agent_name: str = "",
        *,
        wait: float = CONNECT_WAIT,
        progress: Progress | None = None,
    ) -> str:
        """Found group `name` with this app's identity as founder. Returns the invite code, which nothing keeps:
        the caller shows it once. Raises InvalidGroupSettings (per field) or the refusal (a name in use…)."""
        from core.group import founding

        say = progress or _silent
        settings = self.group._validated(_form(name, servers, agent_name), need_password=True)
        before, scope = self._snapshot(), str(self.core.settings.paths.data_path())
        say("Making the join secret…")
        invite = await founding.make_invite(
            settings.name, scope, list(settings.bootstrap_servers), settings.security_protocol
        )
        try:
            node = await self._enter(settings, invite, wait, say)
            say(f"Founding group {settings.name}…")
            await founding.found(node, force=False, wait=wait)
        except BaseException:
            await self._undo(invite, scope, before)
            raise
        self.group.rosterChanged.emit()
        return str(invite.code())

    async def join_with_invite(self, code: str, agent_name: str = "", *, progress: Progress | None = None) -> str:
        """Keep the invite, take the group settings from it, apply them and run the handshake as this app's
        identity. Returns the name this agent was admitted under; a refusal (wrong secret, declined, nobody
        online) raises after the invite is forgotten and the settings restored."""
        from core.group import founding

        say = progress or _silent
        about = self.read_invite(code)
        values = _form(about["group"], about["servers"], agent_name) | {"security_protocol": about["protocol"]}
        settings = self.group._validated(values, need_password=True)
        before, scope = self._snapshot(), str(self.core.settings.paths.data_path())
        invite = await founding.keep_invite(code, scope)
        try:
            node = await self._enter(settings, invite, CONNECT_WAIT, say)
            say(f"Asking the members of {invite.group} to let this agent in…")
            admission = await founding.join(node, settings.join_timeout)
        except BaseException:
            await self._undo(invite, scope, before)
            raise
        self.group.rosterChanged.emit()
        return str(admission.name)

    def _snapshot(self) -> dict[str, Any]:
        group = self.core.settings.group
        return {f"group.{key}": getattr(group, key) for key in SNAPSHOT_KEYS}

    async def _enter(self, settings: GroupSettings, invite: Any, wait: float, say: Progress) -> Any:
        """Write and apply the group settings (group mode on), make sure the runtime holds
        `invite` (a restart when the settings did not change), and wait until it has read the group's history."""
        from ui.group_bridge import _overridden

        say("Saving the group settings…")
        values = changed_values(settings, self.core.settings.group)
        await self.group._save_and_apply({**values, "group.enabled": True})
        runtime = self.core.group
        if runtime is None:
            raise UserError(*_overridden(self.group.loaded, "on"))
        if runtime.node.settings.admission == "open":
            raise UserError(
                "group.admission is 'open', so this agent ignores join secrets.",
                "Set it back to auto: shoal config set group.admission auto",
            )
        if runtime.node.invite != invite:  # the settings were already these: the runtime did not restart
            await self._restart()
            runtime = self.core.group
        say(f"Connecting to {', '.join(settings.bootstrap_servers)}…")
        await runtime.node.wait_online(wait)
        await runtime.node.roster_caught_up(wait)
        return runtime.node

    async def _restart(self) -> None:
        await self.core.leave_group()
        await self.core.join_group()
        self.group.sync()

    async def _undo(self, invite: Any, scope: str, before: dict[str, Any]) -> None:
        """After a failed create or join: the secret leaves the keyring, the group settings are what they were,
        and no runtime keeps the secret in memory."""
        from core.group.invite import forget_invite

        await asyncio.to_thread(forget_invite, invite.group, scope)
        try:
            await self.group._save_and_apply(before)
            runtime = self.core.group
            if runtime is not None and runtime.node.invite == invite:
                await self._restart()
        except Exception:
            log.exception("restoring the group settings after a failed create or join failed")

    # --- the founder's commands -------------------------------------------------------------------

    def _node(self) -> Any:
        if self.core.group is None:
            raise UserError("Group mode is off.", "Connect to a group first (File › Connect to group…).")
        return self.core.group.node

    async def remove_member(self, agentid: str, reason: str = "", wait: float = 15.0) -> None:
        """Revoke an agent, for good (the same key cannot come back); returns once it is read back."""
        node = self._node()
        await node.onboarding.revoke(agentid, reason)
        await read_back(lambda: agentid in node.membership.revoked, wait)
        self.group.rosterChanged.emit()

    async def define_zone(self, name: str, members: list[str], description: str = "", wait: float = 15.0) -> None:
        """A new private zone with exactly these members; returns once it is read back."""
        if problem := self.zone_problem(name):
            raise UserError(problem, "Pick another name.")
        if not members:
            raise UserError("A private zone needs at least one member.", "Tick the members who may see it.")
        await self._publish_zone(name, members, description, wait)

    async def change_zone(self, name: str, members: list[str], description: str = "", wait: float = 15.0) -> None:
        """A private zone's new member list and description (the list replaces the old one)."""
        node = self._node()
        if node.zones is None or not node.zones.is_private(name):
            raise UserError(f"There is no private zone called {name}.", "It may have been deleted meanwhile.")
        if not members:
            raise UserError("A private zone needs at least one member.", "To end the zone, delete it.")
        await self._publish_zone(name, members, description, wait)

    async def remove_zone(self, name: str, wait: float = 15.0) -> None:
        """Ends a private zone: nothing more can be sealed for it (what was stays sealed for its members)."""
        node = self._node()
        if node.zones is None or not node.zones.is_private(name):
            raise UserError(f"There is no private zone called {name}.", "It may have been deleted meanwhile.")
        await node.onboarding.define_zone(name, [], "")
        await read_back(lambda: node.zones.get(name) is None, wait)
        self.group.rosterChanged.emit()

    async def _publish_zone(self, name: str, members: list[str], description: str, wait: float) -> None:
        node, wanted = self._node(), list(dict.fromkeys(members))
        await node.onboarding.define_zone(name, wanted, description)

        def applied() -> bool:
            zone = node.zones.get(name)
            return zone is not None and (list(zone.members), zone.description) == (wanted, description[:300])

        await read_back(applied, wait)
        self.group.rosterChanged.emit()


def _form(name: str, servers: Any, agent_name: str) -> dict[str, Any]:
    """The Connect-to-group form's keys for what the invite dialog asks (an empty agent name keeps the current)."""
    return {"name": name, "bootstrap_servers": servers, **({"agent_name": agent_name} if agent_name.strip() else {})}


def _silent(_text: str) -> None:
    return None
