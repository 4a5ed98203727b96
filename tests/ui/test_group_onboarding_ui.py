"""Closed groups in the desktop app (docs/groups.md, "In the desktop app"), real windows on the real broker: create a
group from the dialog and see its invite code once; a second desktop joins with it; the founder sees it admitted,
puts it in a private zone, and removes it from the roster's context menu; a wrong invite and nobody online are
refused with what to do and leave nothing behind; a manual join approval is an approval card that answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox

from core import config_file
from core.approvals import ApprovalBroker
from core.errors import UserError
from core.group.identity import Identity
from core.group.invite import Invite, load_invite
from core.providers.scripted import ScriptedProvider
from core.service import AgentCore
from core.settings import load_settings
from tests.fixtures.kafka_broker import TEST_CLIENT_SETTINGS, TansuBroker
from tests.group.test_onboarding import founded, member
from tests.ui.conftest import wait_until
from ui.bridge import Bridge
from ui.dialogs.group_invite import GroupInviteDialog
from ui.dialogs.zone_editor import ZoneDialog
from ui.main_window import MainWindow
from ui.widgets.roster_table import Col

SLOW = 60  # seconds: a join on a loaded 2-core machine


@asynccontextmanager
async def desktop(tmp_path: Path, name: str, **group: Any) -> AsyncIterator[tuple[MainWindow, Bridge]]:
    """A main window over a real core with its own data folder and config file (group mode off until a dialog
    turns it on); only test timings come from the command-line layer, so what the dialog saves is what runs."""
    folder = tmp_path / name
    fast = {"client": dict(TEST_CLIENT_SETTINGS), "heartbeat_interval": 0.5, "partitions": 2, **group}
    overrides = {"paths": {"data_dir": str(folder / "data")}, "tools": {"workspace": str(folder / "ws")}, "group": fast}
    loaded = load_settings(folder / "config.toml", overrides)
    approvals = ApprovalBroker()
    core = AgentCore(loaded.settings, provider=ScriptedProvider(["hi"]), approve=approvals.ask)
    await core.start()
    bridge = Bridge(core, approvals, loaded=loaded)
    window = MainWindow(bridge)
    window.resize(1400, 900)
    window.show()
    try:
        await window.start()
        yield window, bridge
    finally:
        bridge.stop_all()
        await bridge.drain()
        await core.stop()


def new_group() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


def scope_of(bridge: Bridge) -> str:
    return str(bridge.core.settings.paths.data_path())


def row_of(window: MainWindow, name: str) -> int:
    names = window.roster.table.names()
    return names.index(name) if name in names else -1


def cell(window: MainWindow, name: str, col: Col) -> str:
    row = row_of(window, name)
    return window.roster.table.item(row, col).text() if row >= 0 else ""


async def create_from_dialog(window: MainWindow, broker: TansuBroker, group: str) -> str:
    pane = window.roster
    pane.invite_button.click()
    [dialog] = [d for d in pane.dialogs() if isinstance(d, GroupInviteDialog)]
    assert dialog.tabs.currentIndex() == 0 and dialog.isVisible()
    dialog.group_name.setText(group)
    dialog.servers.setText(broker.bootstrap)
    dialog.founder_name.setText("founder")
    dialog.create_button.click()
    assert dialog.running and not dialog.create_button.isEnabled() and not dialog.tabs.tabBar().isEnabled()
    await wait_until(lambda: not dialog.running, timeout=SLOW, message=dialog.status.plain)
    assert dialog.outcome == "created", dialog.status.plain
    code = dialog.code_field.text()
    assert code.startswith("shoal-invite-1:") and dialog.code_field.isReadOnly() and dialog.code_box.isVisible()
    assert "Shown once" in dialog.once_label.text() and "cannot show this code again" in dialog.once_label.text()
    assert dialog.status.kind == "ok" and f"Group {group} founded" in dialog.status.plain
    assert not dialog.create_button.isEnabled(), "a founded group is not founded twice from the same form"
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == code and dialog.copy_button.text() == "Copied"
    dialog.reject()
    assert dialog.code_field.text() == "", "closing the dialog forgets the code"
    return code


async def join_from_dialog(window: MainWindow, code: str, name: str, dialog: Any = None) -> GroupInviteDialog:
    dialog = dialog or window.roster.open_invite("join")
    assert isinstance(dialog, GroupInviteDialog)
    dialog.tabs.setCurrentIndex(1)
    assert not dialog.join_button.isEnabled(), "nothing to join with yet"
    dialog.code_edit.setPlainText(code)
    dialog.joiner_name.setText(name)
    assert dialog.join_button.isEnabled(), dialog.errors["code"].plain
    dialog.join_button.click()
    assert dialog.running and not dialog.join_button.isEnabled() and not dialog.code_edit.isEnabled()
    await wait_until(lambda: not dialog.running, timeout=SLOW, message=dialog.status.plain)
    return dialog


def remove_from_context_menu(window: MainWindow, name: str) -> None:
    pane = window.roster
    menu = pane.member_menu(pane.table.card_at(row_of(window, name)))
    assert menu is not None
    [action] = menu.actions()
    assert action.text() == "Remove from group…"
    action.trigger()
    [box] = [b for b in pane.findChildren(QMessageBox) if b.isVisible()]
    assert f"Remove {name} (" in box.text()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel), "Enter never removes anyone"
    box.button(QMessageBox.StandardButton.Yes).click()


async def define_zone(window: MainWindow, zone: str, agentid: str) -> None:
    pane = window.roster
    assert pane.zones_list.new_button.isVisible()
    pane.zones_list.new_button.click()
    [dialog] = [d for d in pane.dialogs() if isinstance(d, ZoneDialog)]
    assert dialog.windowTitle() == "New private zone" and dialog.delete_button.isHidden()
    dialog.name.setText("Not A Name")
    dialog.save_button.click()
    assert "lowercase" in dialog.name_error.plain and "Tick at least one" in dialog.members_error.plain
    dialog.name.setText(zone)
    dialog.check(agentid)
    dialog.save_button.click()
    await wait_until(lambda: not dialog.isVisible(), timeout=20, message=dialog.status.plain)


def open_zone_editor(window: MainWindow, zone: str) -> ZoneDialog:
    """Select the zone's row and press Edit… (a built-in zone has nothing to edit)."""
    zones = window.roster.zones_list
    zones.table.selectRow(zones.zone_names().index("public"))
    assert not zones.edit_button.isEnabled(), "public has no member list"
    zones.table.selectRow(zones.zone_names().index(zone))
    assert zones.edit_button.isVisible() and zones.edit_button.isEnabled()
    zones.edit_button.click()
    [dialog] = [d for d in window.roster.dialogs() if isinstance(d, ZoneDialog) and d.isVisible()]
    return dialog


async def edit_and_delete_zone(window: MainWindow, zone: str, founder: str, member: str) -> None:
    """Add the founder and a description, then take the member off by unticking all (refused) and delete."""
    pane = window.roster
    dialog = open_zone_editor(window, zone)
    assert dialog.windowTitle() == f"Private zone {zone}" and dialog.name.isReadOnly()
    assert dialog.chosen() == [member] and dialog.save_button.text() == "Save"
    dialog.check(founder)
    dialog.description.setText("quarterly numbers")
    dialog.save_button.click()
    await wait_until(lambda: not dialog.isVisible(), timeout=20, message=dialog.status.plain)
    assert sorted(pane.zones_list.members_of(zone)) == ["desk", "founder"]
    row = next(r for r in pane.view.zones if r["zone"] == zone)
    assert row["description"] == "quarterly numbers"

    dialog = open_zone_editor(window, zone)
    assert sorted(dialog.chosen()) == sorted([founder, member]) and dialog.description.text() == "quarterly numbers"
    dialog.check(founder, False)
    dialog.check(member, False)
    dialog.save_button.click()
    assert "Delete zone" in dialog.members_error.plain and dialog.isVisible(), "an empty list is not a save"
    box = dialog.ask_delete()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel), "Enter never deletes"
    box.button(QMessageBox.StandardButton.Yes).click()
    await wait_until(lambda: not dialog.isVisible(), timeout=20, message=dialog.status.plain)
    assert zone not in pane.zones_list.zone_names()


async def test_create_join_zone_and_remove_from_the_desktop(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = new_group()
    async with desktop(tmp_path, "founder") as (window, bridge):
        pane = window.roster
        assert pane.stack.currentWidget() is pane.empty_page and pane.invite_button.isVisible()
        code = await create_from_dialog(window, kafka_broker, group)
        invite = Invite.parse(code)
        own = bridge.core.group.node.agent_id
        assert invite.group == group and invite.founder == own and invite.bootstrap == (kafka_broker.bootstrap,)
        assert load_invite(group, scope_of(bridge)) == invite, "the secret is in the keyring"
        saved = (tmp_path / "founder" / "config.toml").read_text()
        assert code not in saved and group in saved, "the invite is never written to the config file"
        await wait_until(lambda: cell(window, "founder", Col.MEMBER) == "admitted", timeout=20)
        assert pane.zones_list.isVisible() and pane.zones_list.zone_names() == ["public", "shared"]
        assert pane.member_menu(pane.table.card_at(row_of(window, "founder"))) is None, "not itself"

        async with desktop(tmp_path, "desk") as (desk_window, desk_bridge):
            desk_window.connect_group_action.trigger()  # File › Connect to group… › Closed group…
            connect = desk_window.connect_dialog
            assert connect is not None
            connect.invite_button.click()
            [opened] = connect.findChildren(GroupInviteDialog)
            dialog = await join_from_dialog(desk_window, code, "desk", opened)
            assert dialog.outcome == "joined", dialog.status.plain
            assert dialog.status.plain == f"Admitted to group {group} as desk."
            assert connect.isVisible(), "the connect dialog waits under the invite dialog"
            dialog.reject()
            await wait_until(lambda: desk_window.connect_dialog is None, message="the connect dialog stayed open")
            assert desk_window.group_dock.isVisible()
            desk = desk_bridge.core.group.node.agent_id
            await wait_until(lambda: cell(window, "desk", Col.MEMBER) == "admitted", timeout=20)
            assert cell(window, "desk", Col.ZONES) == "shared"
            assert not desk_window.roster.view.admin and not desk_window.roster.zones_list.new_button.isVisible()

            await define_zone(window, "finance", desk)
            assert pane.zones_list.members_of("finance") == ["desk"]
            await wait_until(lambda: cell(window, "desk", Col.ZONES) == "shared, finance")
            await wait_until(lambda: "finance" in desk_window.roster.zones_list.zone_names(), timeout=20)
            await edit_and_delete_zone(window, "finance", own, desk)
            await wait_until(lambda: cell(window, "desk", Col.ZONES) == "shared")
            await wait_until(lambda: "finance" not in desk_window.roster.zones_list.zone_names(), timeout=20)

            remove_from_context_menu(window, "desk")
            await wait_until(lambda: pane.membership_list.entries() == [("desk", "revoked")], timeout=20)
            assert row_of(window, "desk") == -1, "a removed member leaves the roster at once"
            assert (
                pane.membership_list.isVisible()
                and "removed from the desktop app" in pane.membership_list.table.item(0, 3).text()
            )
            await wait_until(lambda: pane.notice.plain.startswith("Removed desk"))
            await wait_until(lambda: desk_bridge.core.group.node.membership.status(desk) == "revoked", timeout=20)


async def test_a_wrong_invite_is_refused_and_leaves_nothing_behind(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    async with founded(kafka_broker, tmp_path) as (_founder, invite), desktop(tmp_path, "guesser") as (window, bridge):
        forged = Invite(invite.group, b"x" * 32, invite.founder, invite.bootstrap).code()
        dialog = await join_from_dialog(window, forged, "guesser")
        assert dialog.outcome == "" and dialog.status.kind == "error"
        assert "wrong-secret" in dialog.status.plain and "fresh invite" in dialog.status.plain
        assert load_invite(invite.group, scope_of(bridge)) is None, "a refused join forgets the invite"
        assert bridge.core.group is None, "group mode is off again, as it was"
        assert config_file.read(tmp_path / "guesser" / "config.toml")["group"]["enabled"] is False
        assert dialog.join_button.isEnabled(), "another code can be tried"


async def test_nobody_online_to_answer_says_so(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = new_group()
    invite = Invite.create(group, Identity.generate().agent_id, [kafka_broker.bootstrap])
    async with desktop(tmp_path, "early", join_timeout=3) as (window, bridge):
        dialog = await join_from_dialog(window, invite.code(), "early")
        assert dialog.outcome == "" and dialog.status.kind == "error"
        assert "No member answered the join request within 3 s" in dialog.status.plain
        assert "must be online" in dialog.status.plain
        assert load_invite(group, scope_of(bridge)) is None and bridge.core.group is None


async def test_bad_input_is_explained_before_anything_runs(tmp_path: Path) -> None:
    async with desktop(tmp_path, "solo") as (window, bridge):
        dialog = window.roster.open_invite("join")
        assert isinstance(dialog, GroupInviteDialog)
        dialog.code_edit.setPlainText("hello")
        assert "not a Shoal invite code" in dialog.errors["code"].plain and not dialog.join_button.isEnabled()
        dialog.code_edit.setPlainText("shoal-invite-1:AAAA")
        assert "damaged" in dialog.errors["code"].plain and not dialog.join_button.isEnabled()

        dialog.tabs.setCurrentIndex(0)
        dialog.create_button.click()
        assert dialog.errors["name"].plain == "Give the group a name." and dialog.task is None
        dialog.group_name.setText("Not a name!")
        dialog.servers.setText("broker:port")
        dialog.create_button.click()
        await wait_until(lambda: not dialog.running)
        assert (
            "letters, digits" in dialog.errors["name"].plain and "host:port" in dialog.errors["bootstrap_servers"].plain
        )
        assert dialog.outcome == "" and dialog.create_button.isEnabled()
        assert bridge.core.group is None and not (tmp_path / "solo" / "config.toml").exists(), "nothing was saved"


async def test_manual_join_approval_is_an_approval_card(kafka_broker: TansuBroker, tmp_path: Path) -> None:
    group = new_group()
    async with desktop(tmp_path, "founder", join_approval="manual") as (window, bridge):
        code = await bridge.group.admin.create_closed_group(group, kafka_broker.bootstrap, "founder")
        invite = Invite.parse(code)
        queue = window.tools.queue
        for name, button, admitted in (("newbie", "approve_button", True), ("stranger", "deny_button", False)):
            async with member(kafka_broker, group, name, tmp_path / name, invite) as newcomer:
                node = newcomer.group.node
                joining = asyncio.ensure_future(node.onboarding.join(SLOW))
                await wait_until(lambda: len(queue.cards()) == 1, timeout=30, message=f"no card for {name}")
                [card] = queue.cards()
                summary = card.summary.toPlainText()
                assert summary == f"Let {name} ({node.agent_id[:12]}) join group {group}?"
                assert card.pending.request.tool == "group.join" and not joining.done(), "it waits for the answer"
                assert card.session_button.isHidden() and card.session_label.isHidden(), "no session to remember"
                getattr(card, button).click()
                if admitted:
                    admission = await asyncio.wait_for(joining, SLOW)
                    assert admission.name == name and admission.admitted_by == bridge.core.group.node.agent_id
                    await wait_until(lambda n=name: cell(window, n, Col.MEMBER) == "admitted", timeout=20)
                else:
                    with pytest.raises(UserError, match="declined") as refused:
                        await asyncio.wait_for(joining, SLOW)
                    assert refused.value.fix == "An admin declined the request."
                await wait_until(lambda: queue.cards() == [], message="the answered card stays")
