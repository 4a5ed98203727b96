"""The first-run dialog, driven like a user would (real widgets offscreen, qasync loop, real config file,
in-memory keyring, local HTTP servers for the endpoint and the download)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QFileDialog

from core import config_file
from core.settings import load_settings
from core.setup import SetupService
from tests.fixtures.memory_keyring import MemoryKeyring
from tests.ui.conftest import wait_until
from tests.unit.test_download import GGUF_HEAD, free_port, payload, running_server
from tests.unit.test_setup import write_catalog
from ui.dialogs.first_run import FirstRunDialog


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Model discovery looks only in a temporary home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    return home


def gguf(path: Path, size: int = 4096) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GGUF_HEAD + b"\x00" * (size - len(GGUF_HEAD)))
    return path


@asynccontextmanager
async def first_run(setup: SetupService | None = None) -> AsyncIterator[tuple[FirstRunDialog, list[bool]]]:
    dialog = FirstRunDialog(setup or SetupService(load_settings()))
    chosen: list[bool] = []
    dialog.modelChosen.connect(lambda: chosen.append(True))
    dialog.open()
    await wait_until(lambda: dialog.found.searched, message="the initial search never finished")
    try:
        yield dialog, chosen
    finally:
        dialog.reject()
        await wait_until(lambda: not (dialog.download.downloading or dialog.server.testing or dialog.found.searching))
        dialog.deleteLater()


def saved() -> dict[str, object]:
    return config_file.read(load_settings().config_file)


async def test_using_a_model_found_on_this_computer(_home: Path) -> None:
    model = gguf(_home / "models" / "small-model.gguf", 3_000_000)
    async with first_run() as (dialog, chosen):
        assert dialog.isVisible() and dialog.windowTitle() == "Welcome to Shoal"
        tree = dialog.found.tree
        assert tree.topLevelItemCount() == 1
        item = tree.topLevelItem(0)
        assert item is not None
        assert [item.text(0), item.text(1), item.text(2)] == ["small-model.gguf", "3.0 MB", "~/models"]
        assert dialog.found.use_button.isEnabled()
        dialog.found.use_button.click()
        assert chosen == [True]
        assert saved() == {"model": {"provider": "llama_cpp", "path": str(model)}}
        assert dialog.pages.currentWidget() is dialog.done_page
        assert "small-model.gguf" in dialog.done_page.summary.text()
        dialog.done_page.start_button.click()
        assert dialog.result() == QDialog.DialogCode.Accepted


async def test_nothing_found_says_what_to_do_instead() -> None:
    async with first_run() as (dialog, chosen):
        assert dialog.found.tree.topLevelItemCount() == 0
        assert "No GGUF models were found" in dialog.found.status.plain
        assert not dialog.found.use_button.isEnabled() and chosen == []


async def test_choosing_a_gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    good = gguf(tmp_path / "picked" / "mine.gguf")
    answers = [str(bad), str(good)]
    asked: list[str] = []

    def fake_dialog(parent: object, caption: str, folder: str, filters: str) -> tuple[str, str]:
        asked.append(filters)
        return answers.pop(0), filters.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_dialog))
    async with first_run() as (dialog, chosen):
        dialog.show_choice("file")
        assert dialog.pages.currentWidget() is dialog.file
        dialog.file.browse_button.click()
        assert dialog.file.error.kind == "error" and "is not a GGUF model" in dialog.file.error.plain
        assert "→" in dialog.file.error.plain and chosen == [] and saved() == {}
        dialog.file.browse_button.click()
        assert chosen == [True] and asked[0].startswith("GGUF models (*.gguf)")
        assert saved() == {"model": {"provider": "llama_cpp", "path": str(good)}}


async def test_connecting_to_a_server_with_test_and_a_key() -> None:
    with running_server(models=["qwen2.5:1.5b", "llama3.2:1b"], api_key="sk-test-key-123") as server:
        async with first_run() as (dialog, chosen):
            dialog.show_choice("server")
            page = dialog.server
            assert page.base_url.text() == "http://localhost:11434/v1"  # the Ollama preset
            page.preset.setCurrentIndex(1)
            assert page.base_url.text() == "http://localhost:1234/v1"  # LM Studio
            page.base_url.setText(server.base_url)
            page.api_key.setText("sk-wrong")
            page.test_button.click()
            await wait_until(lambda: not page.testing and page.test_status.kind == "error")
            assert "refused the API key" in page.test_status.plain and "→" in page.test_status.plain
            page.api_key.setText("sk-test-key-123")
            page.test_button.click()
            await wait_until(lambda: not page.testing and page.test_status.kind == "ok")
            assert page.test_status.plain == "✓ 2 models"
            assert [page.model.itemText(i) for i in range(page.model.count())] == ["llama3.2:1b", "qwen2.5:1.5b"]
            page.model.setCurrentText("qwen2.5:1.5b")
            assert page.save_button.isEnabled()
            page.save_button.click()
            assert chosen == [True]
    assert saved() == {"model": {"provider": "openai", "base_url": server.base_url, "name": "qwen2.5:1.5b"}}
    assert MemoryKeyring.store == {("shoal", "api_key:default"): "sk-test-key-123"}
    assert "sk-test" not in load_settings().config_file.read_text()


async def test_server_errors_show_inline() -> None:
    async with first_run(SetupService(load_settings(), endpoint_timeout=2)) as (dialog, chosen):
        dialog.show_choice("server")
        page = dialog.server
        page.base_url.setText(f"http://127.0.0.1:{free_port()}/v1")
        page.test_button.click()
        await wait_until(lambda: page.test_button.text() == "Testing…" and not page.test_button.isEnabled())
        await wait_until(lambda: not page.testing, timeout=10)
        assert page.test_status.kind == "error" and "Cannot reach" in page.test_status.plain
        page.base_url.setText("localhost:11434")
        page.model.setCurrentText("qwen")
        page.save_button.click()
        assert page.url_error.kind == "error" and "http://" in page.url_error.plain
        assert chosen == [] and saved() == {}


async def test_downloading_a_recommended_model(tmp_path: Path) -> None:
    data = payload(2_000_000)
    with running_server(delay=0.005) as server:
        catalog = write_catalog(tmp_path / "models.json", server.serve("/tiny.gguf", data), data)
        setup = SetupService(load_settings(), catalog_path=catalog)
        async with first_run(setup) as (dialog, chosen):
            dialog.show_choice("download")
            page = dialog.download
            assert page.tree.topLevelItemCount() == 1 and page.selected() is not None
            assert page.download_button.text() == "Download"
            values: list[int] = []
            page.progress.valueChanged.connect(values.append)
            page.download_button.click()
            await wait_until(lambda: bool(chosen), timeout=20)
            assert page.progress.value() == page.progress.maximum() == 1000
            assert any(0 < v < 1000 for v in values), "no intermediate progress was shown"
            assert "Verified" in page.verification
            assert "Verified" in dialog.done_page.summary.text()
    path = setup.models_dir() / "tiny.gguf"
    assert path.read_bytes() == data
    assert saved() == {"model": {"provider": "llama_cpp", "path": str(path)}}


async def test_cancel_then_resume_a_download(tmp_path: Path) -> None:
    data = payload(2_000_000)
    with running_server(delay=0.02) as server:
        catalog = write_catalog(tmp_path / "models.json", server.serve("/tiny.gguf", data), data)
        setup = SetupService(load_settings(), catalog_path=catalog)
        async with first_run(setup) as (dialog, chosen):
            dialog.show_choice("download")
            page = dialog.download
            page.download_button.click()
            await wait_until(lambda: page.progress.value() > 100, timeout=10)
            assert page.cancel_button.isVisible() and not page.download_button.isEnabled()
            page.cancel_button.click()
            await wait_until(lambda: not page.downloading)
            assert "cancelled" in page.status.plain and chosen == []
            assert page.download_button.text().startswith("Resume download (")
            assert saved() == {}
            server.delay = 0
            page.download_button.click()
            await wait_until(lambda: bool(chosen), timeout=20)
            ranges: Callable[[], list[str | None]] = server.ranges
            assert ranges()[0] is None and str(ranges()[-1]).startswith("bytes=")
    assert (setup.models_dir() / "tiny.gguf").read_bytes() == data


async def test_a_failed_download_keeps_the_dialog_usable(tmp_path: Path) -> None:
    with running_server() as server:
        catalog = write_catalog(tmp_path / "models.json", server.url("/gone.gguf"), b"x" * 100)
        setup = SetupService(load_settings(), catalog_path=catalog)
        async with first_run(setup) as (dialog, chosen):
            dialog.show_choice("download")
            dialog.download.download_button.click()
            await wait_until(lambda: not dialog.download.downloading and dialog.download.status.kind == "error")
            assert "HTTP 404" in dialog.download.status.plain and chosen == []
            assert dialog.download.download_button.isEnabled()
