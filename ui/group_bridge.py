"""Group mode for the widgets: the Kafka group's state and roster as Qt signals, and the commands behind the
Connect-to-group dialog, the roster pane and the dispatch dialog.

Owned by `Bridge` (as `bridge.group`) and reached only through it, so widgets never hold a `GroupRuntime`,
a node or a roster. The runtime comes and goes (joining, leaving, settings applied), and the node swaps its
roster when it starts, so listeners are hooked by `sync()` whenever the core's runtime is a new object:
after every command here, and by the roster pane once the core has started (the core may join on start).
Closed groups (founding, joining with an invite, membership, zones) are `self.admin`, a `ui.group_admin.GroupAdmin`.

Roster changes arrive with every heartbeat of every member; they are coalesced into one `rosterChanged`
per `ROSTER_COALESCE_MS`, so a large group never makes the table redraw dozens of times a second.

Connecting goes through the settings dialog's path (`SetupService.save_many`: validated, one atomic write of
config.toml), the SASL password only to the OS keyring, then the reloaded settings are applied to the core.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from shiboken6 import isValid

from core.errors import UserError
from core.service import AgentCore
from core.settings import GroupSettings, LoadedSettings, load_settings
from ui.group_admin import GroupAdmin
from ui.group_form import SASL_PROTOCOLS, InvalidGroupSettings, changed_values, check

log = logging.getLogger(__name__)
ROSTER_COALESCE_MS = 150


@dataclass(frozen=True)
class GroupStatus:
    """What the roster header and the status bar show. `state`: off | stopped | connecting | online | offline."""

    state: str
    group: str
    agent: str = ""
    agent_id: str = ""
    servers: list[str] = field(default_factory=list)
    message: str = ""  # the last error, when the broker cannot be reached or refused us
    fix: str = ""

    @property
    def detail(self) -> str:
        """One line for the `groupState` signal and tooltips."""
        if self.message:
            return f"{self.message} → {self.fix}" if self.fix else self.message
        where = ", ".join(self.servers)
        if self.state == "online":
            return f"group {self.group} as {self.agent}"
        if self.state == "connecting":
            return f"group {self.group} at {where}"
        return "" if self.state == "off" else f"group {self.group}"


class GroupBridge(QObject):
    groupState = Signal(str, str)  # state (off | stopped | connecting | online | offline), detail
    rosterChanged = Signal()  # members joined, left, expired or re-announced (coalesced)
    lagWarning = Signal(bool, str)  # a consumed partition stays behind the lag limits (docs/lag.md); detail
    settingsApplied = Signal(object)  # LoadedSettings, after connect/disconnect wrote config.toml and applied it

    def __init__(self, core: AgentCore, loaded: LoadedSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.core = core
        # The layers the settings came from: reloading after a save keeps command-line overrides.
        self.loaded = loaded or LoadedSettings(core.settings, _default_config_file())
        self._runtime: Any = None
        self._roster_timer = QTimer(self)
        self._roster_timer.setSingleShot(True)
        self._roster_timer.setInterval(ROSTER_COALESCE_MS)
        self._roster_timer.timeout.connect(self.rosterChanged.emit)
        self.admin = GroupAdmin(self)  # closed groups: create, join with an invite, members, zones

    # --- following the runtime -----------------------------------------------------------------

    def sync(self) -> None:
        """Hook the core's current group runtime (if it changed) and say what changed."""
        runtime = self.core.group
        if runtime is self._runtime:
            return
        self._runtime = runtime
        if runtime is not None:
            runtime.node.add_state_listener(lambda _state, _error, r=runtime: self._on_state(r))
            runtime.node.roster.add_listener(lambda _change, _member, r=runtime: self._on_roster(r))
            runtime.node.lag_monitor.add_listener(lambda _rows, r=runtime: self._on_lag(r))
            runtime.node.membership.add_listener(lambda _change, _agent, r=runtime: self._on_roster(r))
            if runtime.node.zones is not None:
                runtime.node.zones.add_listener(lambda _zone, r=runtime: self._on_roster(r))
        self._emit_state()
        self._emit_lag()
        self._roster_timer.start()

    def _on_state(self, runtime: Any) -> None:
        if not isValid(self):
            return
        if runtime is not self._runtime or self.core.group is not runtime:
            self.sync()  # the runtime being replaced or stopped: `sync` reports the new one
            return
        self._emit_state()

    def _on_roster(self, runtime: Any) -> None:
        if isValid(self) and runtime is self._runtime and not self._roster_timer.isActive():
            self._roster_timer.start()

    def _on_lag(self, runtime: Any) -> None:
        if isValid(self) and runtime is self._runtime:
            self._emit_lag()

    def _emit_lag(self) -> None:
        warnings = [row for row in self.lag_rows() if row["warning"]]
        self.lagWarning.emit(bool(warnings), _lag_detail(warnings))

    def _emit_state(self) -> None:
        status = self.group_state()
        self.groupState.emit(status.state, status.detail)

    # --- queries -------------------------------------------------------------------------------

    def settings(self) -> GroupSettings:
        """The group settings in effect (the dialog starts from them)."""
        return self.core.settings.group

    def group_state(self) -> GroupStatus:
        runtime = self.core.group
        settings = self.core.settings.group if runtime is None else runtime.node.settings
        if runtime is None:
            return GroupStatus("off", settings.name, settings.display_name(), servers=list(settings.bootstrap_servers))
        node = runtime.node
        error = node.last_error
        return GroupStatus(
            node.state,
            settings.name,
            node.name,
            node.identity.agent_id if node.identity else "",
            list(settings.bootstrap_servers),
            error.message if error else "",
            error.fix if error else "",
        )

    def group_members(self) -> list[dict[str, Any]]:
        """Each member's card (`Member.card()`), plus `isself` for this agent's own row and its place in the
        hierarchy (`hierarchy.placement`: parent, children, depth, orchestrator); in tree order: by name, each
        parent followed by its children (a group without a hierarchy is simply by name)."""
        from core.group.hierarchy import placement, tree

        runtime = self.core.group
        if runtime is None:
            return []
        own = runtime.node.identity.agent_id if runtime.node.identity else ""
        members, limit = runtime.members(), runtime.node.settings.max_hierarchy_depth
        return [
            {**member.card(), "isself": member.agentid == own, **placement(member, members, limit)}
            for member, _depth in tree(members)
        ]

    def lag_rows(self) -> list[dict[str, Any]]:
        """The lag monitor's latest sample (it samples about once a second) as plain rows: topic, partition,
        reader, group, messages, seconds (None: not known yet), warning. Empty while group mode is off."""
        runtime = self.core.group
        if runtime is None:
            return []
        return [row.to_dict() for row in runtime.node.lag_monitor.snapshot()]

    def dashboard_members(self) -> list[Any]:
        """The dashboard's member rows (`core.group.taskviews.MemberRow`: idle or busy, the tasks each one is on
        with their step, elapsed time ticking on this clock); busy first. Empty while group mode is off."""
        from core.group.taskviews import member_rows

        runtime = self.core.group
        if runtime is None:
            return []
        own = runtime.node.identity.agent_id if runtime.node.identity else ""
        return member_rows(runtime.members(), own)

    async def dashboard_tasks(self, limit: int = 30) -> list[Any]:
        """This agent's latest group tasks (`core.group.taskviews.TaskView`, newest first), with the live step
        of those a member is working on and the members' other live tasks; the history also with group mode off."""
        from core.group.taskviews import local_tasks, with_live

        db = getattr(self.core, "db", None)  # a remote core (app/remote) keeps its tasks on the server
        if db is None or not db.running:  # not started yet, or stopped while the window closes
            return []
        runtime = self.core.group
        return with_live(await local_tasks(db, limit), runtime.members() if runtime is not None else [])

    def password_stored(self, group: str | None = None) -> bool:
        """Whether a SASL password for `group` (default: the current one) is in the keyring or environment."""
        from core.group.kafka_config import group_password

        name = group or self.core.settings.group.name
        return bool(group_password(self.core.settings.group.model_copy(update={"name": name})))

    def validate(self, values: dict[str, Any], *, need_password: bool = True) -> dict[str, str]:
        """A message per wrong field (empty when `values` can be connected with)."""
        settings, problems = check(values, self.core.settings.group)
        protocol = str(values.get("security_protocol") or self.core.settings.group.security_protocol)
        name = settings.name if settings is not None else self.core.settings.group.name
        typed = str(values.get("password") or "")
        if protocol in SASL_PROTOCOLS and need_password and not typed and not self.password_stored(name):
            problems["password"] = "Enter the password (it is kept in the OS keyring, never in the file)."
        return problems

    # --- commands ------------------------------------------------------------------------------

    def _validated(self, values: dict[str, Any], *, need_password: bool) -> GroupSettings:
        problems = self.validate(values, need_password=need_password)
        settings, _ = check(values, self.core.settings.group)
        if problems or settings is None:
            raise InvalidGroupSettings(problems)
        return settings

    @staticmethod
    def _store_password(settings: GroupSettings, values: dict[str, Any]) -> None:
        password = str(values.get("password") or "")
        if password and settings.security_protocol in SASL_PROTOCOLS:
            from core.group.kafka_config import set_group_password

            set_group_password(settings.name, password)

    async def connect_group(self, values: dict[str, Any]) -> None:
        """Validate, keep the password in the keyring, write the group settings (enabled) to config.toml and
        apply them, so the core joins. Raises InvalidGroupSettings (per field) or another ShoalError."""
        settings = self._validated(values, need_password=True)
        self._store_password(settings, values)  # first: without a keyring nothing else is written either
        before = self.core.group
        await self._save_and_apply({**changed_values(settings, self.core.settings.group), "group.enabled": True})
        runtime = self.core.group
        if runtime is None:
            raise UserError(*_overridden(self.loaded, "on"))
        if runtime is before and runtime.node.state == "offline":  # nothing changed: retry now, not at backoff
            await self.core.leave_group()
            await self.core.join_group()
            self.sync()

    async def disconnect_group(self) -> None:
        """Leave the group and keep group mode off (group.enabled = false in config.toml)."""
        await self._save_and_apply({"group.enabled": False})
        if self.core.group is not None:
            raise UserError(*_overridden(self.loaded, "off"))

    async def _save_and_apply(self, values: dict[str, Any]) -> None:
        from core.setup import InvalidSettingsError, SetupService

        try:
            SetupService(self.loaded).save_many(values)
        except InvalidSettingsError as exc:
            raise InvalidGroupSettings({k.removeprefix("group."): v for k, v in exc.problems.items()}) from exc
        self.loaded = load_settings(self.loaded.config_file, self.loaded.cli)
        await self.core.apply_settings(self.loaded.settings)
        self.sync()
        self.settingsApplied.emit(self.loaded)

    async def test_group_connection(
        self, values: dict[str, Any], *, probe: bool = True, timeout: float = 5.0
    ) -> AsyncIterator[Any]:
        """Yield each `core.group.kshark.Check` as it completes: the `shoal kshark` report, each network step
        bounded by `timeout` and the run by 3 × `timeout`. A typed SASL password is stored in the keyring first
        (the checks read it from there, as the group will). Closing the iterator early (the dialog's Stop)
        closes any Kafka client the checks still hold."""
        from core.group.kshark import run_checks

        settings = self._validated(values, need_password=False)
        self._store_password(settings, values)
        async with contextlib.aclosing(run_checks(settings, probe=probe, timeout=timeout)) as checks:
            async for item in checks:
                yield item

    @staticmethod
    def test_verdict(checks: list[Any]) -> str:
        """ok | warn | fail: the worst status of a Test-connection report (skips do not count)."""
        from core.group.kshark import overall

        return overall(checks)

    async def dispatch(
        self, text: str, *, skill: str = "", to: str = "", deadline: float | None = None
    ) -> AsyncIterator[Any]:
        """Send a task to a skill's queue (or to one agent) and yield its `TaskProgress` updates, ending with
        the `TaskResult`. Leaving early only stops following: the peer still finishes the task."""
        runtime = self.core.group
        if runtime is None:
            raise UserError("Group mode is off.", "Connect to a group first (File › Connect to group…).")
        handle = await runtime.dispatch(text, skill=skill, to=to, deadline=deadline)
        async for update in handle:
            yield update

    async def replay(
        self, topic: str, start: str = "beginning", correlation: str = "", *, limit: int = 1000, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The envelopes of a group topic as table rows (`ReplayEntry.row()`), each marked verified or not, read
        without touching the live group (core/group/replay.py); works with group mode off. Raises UserError
        (bad position, no such topic) or NetworkError."""
        from core.group.replay import replay
        from core.group.replay_query import ReplayQuery

        query = ReplayQuery.from_text(topic, start, limit=limit, correlation=correlation)
        result = await replay(self.core.settings.group, query, timeout=timeout)
        return [entry.row() for entry in result.entries]


def _lag_detail(warnings: list[dict[str, Any]]) -> str:
    """'group.g.memory[0]: 380 records, 2.4 s behind' for the first few lagging partitions."""
    parts = []
    for row in warnings[:3]:
        seconds = "" if row["seconds"] is None else f", {row['seconds']:.1f} s"
        parts.append(f"{row['topic']}[{row['partition']}]: {row['messages']} records{seconds} behind")
    more = f" (+{len(warnings) - 3} more)" if len(warnings) > 3 else ""
    return "; ".join(parts) + more


def _default_config_file() -> Any:
    from core import paths

    return paths.config_file()


def _overridden(loaded: LoadedSettings, wanted: str) -> tuple[str, str]:
    origin = loaded.source_of("group.enabled")
    where = {"env": "the environment variable SHOAL_GROUP__ENABLED", "cli": "a command-line flag"}.get(origin, origin)
    return (
        f"Group mode stays {'off' if wanted == 'on' else 'on'}: group.enabled is set by {where}.",
        "Remove that setting (it wins over the config file), then try again.",
    )
