"""The settings dialog: edits become validated, atomic config writes; wrong values are shown next to their
field and nothing is written (real widgets offscreen, real config file, in-memory keyring)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QFileDialog

from core import config_file
from core.settings import DEFAULT_SYSTEM_PROMPT, load_settings
from core.setup import SetupService
from tests.fixtures.memory_keyring import MemoryKeyring
from tests.ui.conftest import wait_until
from tests.unit.test_download import GGUF_HEAD, running_server
from ui.dialogs.settings import SettingsDialog


@asynccontextmanager
async def settings_dialog(setup: SetupService | None = None) -> AsyncIterator[tuple[SettingsDialog, list[bool]]]:
    dialog = SettingsDialog(setup or SetupService(load_settings()))
    saved: list[bool] = []
    dialog.saved.connect(lambda: saved.append(True))
    dialog.open()
    try:
        yield dialog, saved
    finally:
        await wait_until(lambda: not dialog.testing)
        dialog.reject()
        dialog.deleteLater()


def written() -> dict[str, object]:
    return config_file.read(load_settings().config_file)


async def test_shows_the_current_settings() -> None:
    async with settings_dialog() as (dialog, _):
        assert dialog.local_radio.isChecked() and not dialog.server_box.isEnabled()
        assert dialog.n_ctx.text() == "4096" and dialog.temperature.text() == "0.7" and dialog.seed.text() == ""
        assert dialog.system_prompt.toPlainText() == DEFAULT_SYSTEM_PROMPT
        assert not dialog.shell_auto.isChecked() and not dialog.web_private.isChecked()
        assert dialog.key_status.text() == "No API key stored (local servers need none)."
        assert [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())] == [
            "Model",
            "Generation",
            "Tools && workspace",
            "Schedule",
            "Appearance",
            "Group",
            "Remote",
        ]
        asked: list[bool] = []
        dialog.connectGroupRequested.connect(lambda: asked.append(True))
        dialog.group_button.click()
        assert asked == [True] and "Connect-to-group dialog" in dialog.group_hint.text()
        assert dialog.theme.isEnabled() and dialog.theme.currentData() == "system"


async def test_changing_values_and_ok_writes_only_the_changes(tmp_path: Path) -> None:
    async with settings_dialog() as (dialog, saved):
        dialog.temperature.setText("0.3")
        dialog.max_tokens.setText("2048")
        dialog.seed.setText("42")
        dialog.system_prompt.setPlainText("Be brief.")
        dialog.shell_auto.setChecked(True)
        dialog.web_private.setChecked(True)
        dialog.shell_timeout.setText("45")
        dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
        dialog.ok_button.click()
        assert saved == [True] and dialog.result() == QDialog.DialogCode.Accepted
    assert written() == {
        "model": {"temperature": 0.3, "max_tokens": 2048, "seed": 42},
        "agent": {"system_prompt": "Be brief."},
        "tools": {"auto_approve": ["shell"], "web_allow_private": True, "shell_timeout": 45.0},
        "appearance": {"theme": "dark"},
    }  # the workspace (set by SHOAL_TOOLS__WORKSPACE here) and untouched defaults are not written
    settings = load_settings().settings
    assert settings.model.seed == 42 and settings.appearance.theme == "dark"


async def test_the_schedule_tab_shows_checks_and_writes_the_schedule_settings() -> None:
    async with settings_dialog() as (dialog, saved):
        tab = dialog.schedule_tab
        assert tab.enabled.isChecked() and tab.notify.isChecked() and tab.max_concurrent.text() == "1"
        assert tab.catch_up.currentData() == "once" and tab.window_hours.text() == "24"
        tab.max_concurrent.setText("40")
        assert not dialog.apply() and dialog.errors["schedule.max_concurrent"].plain, "1 to 16"
        assert saved == [] and "schedule" not in written()
        tab.max_concurrent.setText("3")
        tab.catch_up.setCurrentIndex(tab.catch_up.findData("skip"))
        tab.window_hours.setText("6,5")
        tab.notify.setChecked(False)
        tab.enabled.setChecked(False)
        assert dialog.apply() and saved == [True]
        assert written()["schedule"] == {
            "max_concurrent": 3,
            "catch_up": "skip",
            "catch_up_window_hours": 6.5,
            "notify": False,
            "enabled": False,
        }


async def test_an_invalid_value_shows_the_message_and_writes_nothing() -> None:
    async with settings_dialog() as (dialog, saved):
        dialog.top_p.setText("0.5")  # valid, but must not be written while another field is wrong
        dialog.temperature.setText("5")
        dialog.n_ctx.setText("lots")
        dialog.tabs.setCurrentIndex(2)
        dialog.apply_button.click()
        assert saved == [] and dialog.isVisible()
        assert dialog.errors["model.temperature"].plain == "Input should be less than or equal to 2"
        assert not dialog.errors["model.temperature"].isHidden()
        assert dialog.errors["model.n_ctx"].plain == "Enter a whole number."
        assert dialog.errors["model.top_p"].kind == ""
        assert dialog.tabs.currentIndex() == 0  # the first tab with a problem is shown
        assert not load_settings().config_file.exists()
        dialog.ok_button.click()
        assert dialog.isVisible() and saved == []  # OK keeps the dialog open too
        dialog.temperature.setText("1.2")
        dialog.n_ctx.setText("8192")
        dialog.apply_button.click()
        assert saved == [True] and dialog.errors["model.temperature"].kind == ""
    assert written() == {"model": {"temperature": 1.2, "top_p": 0.5, "n_ctx": 8192}}


async def test_a_model_file_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "photo.gguf"
    bad.write_bytes(b"\x89PNG....")
    good = tmp_path / "m.gguf"
    good.write_bytes(GGUF_HEAD + b"\x00" * 32)
    answers = [str(bad), str(good)]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a: (answers.pop(0), "")))
    async with settings_dialog() as (dialog, saved):
        dialog.browse_model_button.click()
        assert dialog.model_path.text() == str(bad)
        dialog.apply_button.click()
        assert "is not a GGUF model" in dialog.errors["model.path"].plain and saved == []
        assert not load_settings().config_file.exists()
        dialog.browse_model_button.click()
        dialog.ok_button.click()
        assert saved == [True]
    assert written() == {"model": {"path": str(good)}}


async def test_workspace_browse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "my-work"
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a: str(folder)))
    async with settings_dialog() as (dialog, saved):
        dialog.tabs.setCurrentIndex(2)
        dialog.browse_workspace_button.click()
        dialog.ok_button.click()
        assert saved == [True]
    assert written() == {"tools": {"workspace": str(folder)}}


async def test_an_endpoint_with_a_key_goes_to_the_keyring() -> None:
    with running_server(models=["qwen2.5:1.5b", "llama3.2:1b"], api_key="sk-live-abcdef") as server:
        async with settings_dialog() as (dialog, saved):
            dialog.server_radio.setChecked(True)
            assert dialog.server_box.isEnabled() and not dialog.local_box.isEnabled()
            dialog.base_url.setText(server.base_url + "/")
            dialog.api_key.setText("sk-live-abcdef")
            dialog.test_button.click()
            await wait_until(lambda: not dialog.testing and dialog.test_status.kind in ("ok", "error"))
            assert dialog.test_status.plain == "✓ 2 models"
            dialog.model_name.setCurrentText("llama3.2:1b")
            dialog.apply_button.click()
            assert saved == [True]
            assert dialog.api_key.text() == "" and dialog.key_status.text() == "A key is stored in the OS keyring."
            assert dialog.forget_key_button.isEnabled()
            dialog.forget_key_button.click()
            assert MemoryKeyring.store == {} and not dialog.forget_key_button.isEnabled()
    assert written() == {"model": {"provider": "openai", "base_url": server.base_url, "name": "llama3.2:1b"}}
    assert "sk-live" not in load_settings().config_file.read_text()


async def test_a_bad_endpoint_is_shown_inline() -> None:
    async with settings_dialog() as (dialog, saved):
        dialog.server_radio.setChecked(True)
        dialog.base_url.setText("localhost:11434")
        dialog.apply_button.click()
        assert "http://" in dialog.errors["model.base_url"].plain
        assert "model's name" in dialog.errors["model.name"].plain
        assert saved == [] and not load_settings().config_file.exists() and MemoryKeyring.store == {}
