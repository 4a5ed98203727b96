"""The policy in the desktop, over a real core with a scripted model: the composer's label picker, label badges,
a turn the policy refuses, `policy.decision` rows in the timeline, and the Policy pane (rules, reload with a
bad file, quota usage, Check…, remote mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from PySide6.QtGui import QColor
from PySide6.QtTest import QTest

from app.remote import RemoteCore
from core import events as ev
from core.approvals import ApprovalBroker
from core.settings import load_settings
from core.timeline.store import Event
from tests.ui.conftest import scripted_bridge, wait_until
from tests.ui.test_chat_pane import answered, pane_over, text_of
from tests.ui.test_timeline_pane import of_kind, run_turn
from ui.bridge import Bridge
from ui.panes.policy import PolicyPane
from ui.panes.timeline import TimelinePane
from ui.policy_bridge import PolicyBridge
from ui.widgets.event_detail import describe
from ui.widgets.policy_format import EFFECT_COLORS, LABEL_COLORS
from ui.widgets.trace_tree import CONTEXT_ROLE, Col

REMOTE_MODEL = {"model": {"provider": "openai", "base_url": "https://api.openai.com/v1", "name": "gpt-4o-mini"}}
DENY_RULE = """\
version = 1

[[rules]]
name = "no-confidential-to-remote"
effect = "deny"
action = "model"
target = "openai:api.openai.com"
max_label = "internal"
description = "confidential notes stay on this machine"
"""
QUOTA = """\
[[quotas]]
name = "daily-tokens"
scope = "provider"
target = "*"
tokens = 100000
period = "day"
"""


def policy_file(text: str) -> Path:
    """policy.toml beside the test's config.toml (tests/conftest.py points SHOAL_CONFIG into tmp_path)."""
    from core import paths

    path = paths.config_file().parent / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def badge(label: str) -> str:
    """A question's header with its badge, as plain text (the chip's no-break spaces read as spaces)."""
    return f"You   {label} "


async def user_messages(bridge: Bridge, session_id: str) -> list[Event]:
    found: list[Event] = []

    def walk(nodes: list) -> None:  # type: ignore[type-arg]
        for node in nodes:
            if node.event.kind == "user.message":
                found.append(node.event)
            walk(node.children)

    for tree in await bridge.traces(session_id):
        walk(tree)
    return found


@asynccontextmanager
async def policy_pane(bridge: Bridge) -> AsyncIterator[PolicyPane]:
    pane = PolicyPane(bridge)
    pane.resize(560, 520)
    opened: list[str] = []
    pane.open_url = lambda url: opened.append(url.toLocalFile()) or True  # type: ignore[method-assign, func-returns-value]
    pane.opened = opened  # type: ignore[attr-defined]
    pane.show()
    try:
        await pane.start()
        yield pane
    finally:
        pane.hide()
        pane.deleteLater()


# --- the composer's label picker ------------------------------------------------------------------------------


async def test_a_label_chosen_by_keyboard_is_stored_with_the_message_and_shown_as_a_badge() -> None:
    async with scripted_bridge(["Noted.", "Fine."]) as (bridge, _p), pane_over(bridge) as (pane, _b, finals):
        picker = pane.composer.labels
        assert picker.label() is None and picker.currentText() == "auto"
        assert pane.composer.labels_caption.buddy() is picker  # Alt+L reaches it
        assert "policy.default_label (internal)" in picker.toolTip()
        picker.setFocus()
        QTest.keyClicks(picker, "c")  # type-ahead, as a person picks with the keyboard
        assert picker.label() == "confidential"
        sid = pane.current_session_id()
        assert sid is not None
        pane.composer.set_text("My salary review is on Friday")
        assert pane.composer.submit()
        await answered(pane, 1, finals)
        pane.composer.set_text("And the weather?")  # the choice sticks to the thread
        assert pane.composer.submit()
        await answered(pane, 2, finals)

        entries = await bridge.transcript(sid)
        assert [e.label for e in entries if e.message.role == "user"] == ["confidential", "confidential"]
        payloads = [e.payload for e in await user_messages(bridge, sid)]
        assert [p.get("label") for p in payloads] == ["confidential", "confidential"]
        shown = text_of(pane)
        assert shown.count(badge("confidential")) == 2  # a badge on each question, none on the answers

        await pane.new_thread()
        assert pane.current_session_id() != sid and picker.label() is None  # a new thread starts at auto
        await pane.open_session(sid)
        assert picker.label() == "confidential"  # and each thread keeps its own


async def test_auto_sends_no_label_and_only_labels_other_than_the_default_show_a_badge() -> None:
    async with scripted_bridge(["Ok."] * 3) as (bridge, _p), pane_over(bridge) as (pane, _b, finals):
        sid = pane.current_session_id()
        assert sid is not None
        pane.composer.set_text("plain question")
        pane.composer.submit()
        await answered(pane, 1, finals)
        pane.composer.labels.set_label("internal")  # the default: stored, but no badge (it is what unlabelled means)
        pane.composer.set_text("explicitly internal")
        pane.composer.submit()
        await answered(pane, 2, finals)
        pane.composer.labels.set_label("public")  # below the default: a badge too
        pane.composer.set_text("the tide table")
        pane.composer.submit()
        await answered(pane, 3, finals)
        entries = await bridge.transcript(sid)
        assert [e.label for e in entries if e.message.role == "user"] == [None, "internal", "public"]
        shown = text_of(pane)
        assert shown.count("\nYou\n") == 2 and badge("internal") not in shown and badge("public") in shown


# --- a turn the policy refuses ---------------------------------------------------------------------------------


async def test_a_denied_turn_shows_the_rule_and_the_fix_in_the_chat_and_a_red_row_in_the_timeline() -> None:
    policy_file(DENY_RULE)
    async with (
        scripted_bridge(["never sent"], overrides=REMOTE_MODEL) as (bridge, provider),
        pane_over(bridge) as (pane, _b, finals),
    ):
        timeline = TimelinePane(bridge)
        timeline.resize(700, 500)
        timeline.show()
        await timeline.start()
        sid = pane.current_session_id()
        timeline.set_session(sid)
        pane.composer.labels.set_label("confidential")
        pane.composer.set_text("Q3 payroll figures attached")
        pane.composer.submit()
        await answered(pane, 1, finals)

        assert isinstance(finals[0], ev.TurnFailed) and finals[0].error["error"] == "PolicyDenied"
        assert provider.calls == []  # nothing left the machine
        shown = text_of(pane)
        assert "⚠ rule 'no-confidential-to-remote' (policy.toml line 3) denies sending confidential data to the " \
               "model openai:api.openai.com" in shown  # fmt: skip
        assert "→ Use a local model for this conversation, or add a change to policy.toml line 3" in shown
        assert "Q3 payroll figures attached" in shown  # the question stays, with its badge
        assert badge("confidential") in shown

        await wait_until(lambda: bool(of_kind(timeline.tree, "policy.decision")), message="no policy row")
        row = of_kind(timeline.tree, "policy.decision")[0]
        assert row.text(Col.EVENT) == (
            "policy · deny model openai:api.openai.com (confidential) — rule no-confidential-to-remote"
        )
        assert row.foreground(Col.EVENT).color() == QColor(EFFECT_COLORS["deny"])
        assert "denies sending confidential data" in row.toolTip(Col.EVENT)
        event = timeline.tree.event_at(row)
        assert event is not None
        detail = describe(event)
        assert "decision    DENY" in detail
        assert "rule        no-confidential-to-remote (policy.toml line 3)" in detail
        assert "why:\nrule 'no-confidential-to-remote' (policy.toml line 3) denies" in detail
        question = of_kind(timeline.tree, "user.message")[0]
        assert question.text(Col.EVENT) == "confidential · “Q3 payroll figures attached”"
        timeline.filter_combo.setCurrentText("Policy")
        assert not row.isHidden()
        assert question.data(Col.EVENT, CONTEXT_ROLE)  # kept, greyed, as the decision's cause
        timeline.hide()
        timeline.deleteLater()


async def test_a_routine_decision_is_shown_in_the_detail_of_the_step_it_gated() -> None:
    async with scripted_bridge(["hello"]) as (bridge, _provider):
        session = await bridge.new_session()
        await run_turn(bridge, session.id, "hi")
        tree = TimelinePane(bridge)
        await tree.start()
        tree.set_session(session.id)
        await wait_until(lambda: bool(of_kind(tree.tree, "llm.request")), message="no llm.request row")
        request = tree.tree.event_at(of_kind(tree.tree, "llm.request")[0])
        assert request is not None
        detail = describe(request)
        assert "policy (routine, recorded with this step):" in detail
        assert "decision    ALLOW" in detail and "rule        builtin:local-model (built-in)" in detail
        assert not of_kind(tree.tree, "policy.decision")  # routine: no row of its own
        tree.deleteLater()


# --- the Policy pane -------------------------------------------------------------------------------------------


async def test_the_pane_lists_rules_in_order_and_reload_shows_a_bad_files_line_without_losing_the_rules() -> None:
    path = policy_file(DENY_RULE)
    async with scripted_bridge([]) as (bridge, _p), policy_pane(bridge) as pane:
        names = pane.rules.rule_names()
        assert names[0] == "no-confidential-to-remote"
        assert names[1:4] == ["builtin:local-model", "builtin:remote-model", "builtin:zone-public"]
        assert names[-1] == "builtin:tools"
        assert str(path.name) in pane.file_label.text() and pane.open_button.text() == "Open file"
        assert "Default label: internal · 1 rule of yours" in pane.state.text()

        path.write_text(DENY_RULE.replace('effect = "deny"', 'effect = "maybe"'), encoding="utf-8")
        assert pane.reload_button.isEnabled()
        pane.reload_button.click()
        assert pane.message.kind == "error"
        assert f"{path}, line 5: rules[1].effect:" in pane.message.plain
        assert "→ Fix that line" in pane.message.plain
        assert pane.rules.rule_names()[0] == "no-confidential-to-remote"  # the rules in force are unchanged
        assert bridge.core.policy.engine.entries[0].ref.name == "no-confidential-to-remote"
        assert "still the ones in force" in pane.state.text()

        path.write_text(DENY_RULE.replace("no-confidential-to-remote", "keep-it-local") + QUOTA, encoding="utf-8")
        pane.reload_button.click()
        assert pane.message.kind == "ok" and "Reloaded: 1 rule of yours" in pane.message.plain
        assert pane.rules.rule_names()[0] == "keep-it-local"
        assert any("quota daily-tokens (policy.toml line 10)" in line for line in bridge.policy.other_tables())
        pane.open_button.click()
        assert pane.opened == [str(path)]  # type: ignore[attr-defined]


async def test_without_a_file_open_writes_the_example_and_the_rules_follow() -> None:
    async with scripted_bridge([]) as (bridge, _p), policy_pane(bridge) as pane:
        assert pane.open_button.text() == "Create file…"
        assert "only the built-in defaults apply" in pane.file_label.text()
        assert pane.rules.rule_names()[0] == "builtin:local-model"
        pane.open_button.click()
        path = bridge.policy.file_path()
        assert path.is_file() and pane.opened == [str(path)]  # type: ignore[attr-defined]
        assert pane.open_button.text() == "Open file"
        assert not pane.rules.rule_names()[0].startswith("builtin:")  # the example's own rules are in force


async def test_quota_usage_follows_each_turn() -> None:
    policy_file(QUOTA)
    async with scripted_bridge(["A short answer."]) as (bridge, _p), policy_pane(bridge) as pane:
        assert pane.quotas.cells() == [["daily-tokens", "*", "0 / 100,000 (0%)", pane.quotas.cells()[0][3]]]
        session = await bridge.new_session()
        await run_turn(bridge, session.id, "How long is a piece of string?")
        await wait_until(lambda: pane.quotas.cells()[0][1] == "llama_cpp", message="usage not refreshed")
        name, _target, used, resets = pane.quotas.cells()[0]
        rows = await bridge.policy.usage()
        assert name == "daily-tokens" and rows[0].used > 0 and used == f"{rows[0].used:,} / 100,000 (0%)"
        assert resets == rows[0].resets and resets.endswith("00:00")


async def test_check_explains_a_decision_like_the_cli() -> None:
    async with scripted_bridge([]) as (bridge, _p), policy_pane(bridge) as pane:
        pane.tabs.setCurrentIndex(2)
        form = pane.check
        form.set_request("model", "openai:api.openai.com", label="confidential")
        checked = form.run_check()
        assert checked is not None and checked.decision.effect == "deny"
        assert form.verdict.text() == "DENY — built-in rule 'builtin:remote-model'"
        assert EFFECT_COLORS["deny"] in form.verdict.styleSheet()
        assert "rules considered before it:" in form.explanation.toPlainText()
        assert "builtin:local-model" in form.explanation.toPlainText()

        form.set_request("tool", "shell")  # the tool's own risk: high, which asks
        assert form.run_check().decision.effect == "ask"  # type: ignore[union-attr]
        assert form.verdict.text().startswith("ASK — built-in rule 'builtin:high-risk-ask'")
        form.set_request("tool", "read_file", requester="peer:bob")
        assert form.run_check().decision.rule.name == "builtin:peer-low-risk-tools"  # type: ignore[union-attr]
        form.set_request("tool", "")
        assert form.run_check() is None and "A target is needed" in form.error.plain


# --- remote mode -----------------------------------------------------------------------------------------------


async def test_remote_mode_says_managed_on_the_server_and_labels_still_travel() -> None:
    loaded = load_settings(None, {"remote": {"enabled": True, "url": "http://127.0.0.1:9"}})
    remote = RemoteCore(loaded.settings, ApprovalBroker())  # not started: no server is needed to see it has no policy
    assert PolicyBridge(remote).available is False
    async with scripted_bridge(["hi"]) as (bridge, _p), pane_over(bridge) as (chat, _b, _finals):
        bridge.policy.core = remote  # the desktop's bridges over a RemoteCore, as app/remote_wiring.py builds them
        bridge.policy.changed.emit()
        assert chat.composer.labels.isEnabled() and chat.composer.label() is None  # auto: the server decides
        assert "server's policy" in chat.composer.labels.toolTip()
        async with policy_pane(bridge) as pane:
            assert pane.managed_remotely
            assert "Managed on the server" in pane.remote_note.text()
            assert pane.reload() is False  # nothing to reload here, and nothing raised


def test_label_colours_follow_the_risk_colours() -> None:
    from core.tools.registry import RiskTier
    from ui.widgets.risk import RISK_COLORS

    assert LABEL_COLORS["public"] == EFFECT_COLORS["allow"] == RISK_COLORS[RiskTier.READ]
    assert LABEL_COLORS["confidential"] == EFFECT_COLORS["ask"] == RISK_COLORS[RiskTier.WRITE]
    assert LABEL_COLORS["secret"] == EFFECT_COLORS["deny"] == RISK_COLORS[RiskTier.HIGH]
