"""The Memory pane in the real main window over a real core and the real embedding model: semantic search,
the detail, forgetting, indexing a folder, the "Memories used" line under an answer that automatic recall fed,
and the recall row in the timeline. Tests that load the embedding model (seconds, in its own process) are few
and do several things each; memory off and a broken model need no model and are cheap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QFileDialog, QMessageBox

from core.providers.scripted import ScriptedProvider, Step
from core.timeline.sessions import ChatMessage, TranscriptEntry
from tests.ui.conftest import scripted_bridge, wait_until
from tests.ui.test_timeline_pane import rows
from ui import tasks
from ui.bridge import Bridge
from ui.main_window import MainWindow
from ui.widgets.memory_format import answer_memories
from ui.widgets.memory_results import Col

MODEL_LOAD = 90  # seconds: the first embedding starts a process that imports torch
PLANE = "My plane ticket to Lisbon is booked for the 14th of March."
WIFI = "The office wifi password is written on the fridge."
SCREENSHOTS = Path("/tmp")  # memory_pane*.png: to look at the pane after a change


@asynccontextmanager
async def window_over(
    steps: Sequence[Step] = ("ok",), overrides: dict[str, Any] | None = None, *, delay: float = 0.0
) -> AsyncIterator[tuple[MainWindow, Bridge, ScriptedProvider]]:
    async with scripted_bridge(steps, delay=delay, overrides=overrides) as (bridge, provider):
        window = MainWindow(bridge)
        window.resize(1400, 900)
        window.show()
        await window.start()
        window.memory_dock.show()
        window.memory_dock.raise_()
        yield window, bridge, provider


def chat_text(window: MainWindow) -> str:
    window.chat.view.flush()
    return window.chat.view.toPlainText()


def tooltip_at(window: MainWindow, text: str) -> str:
    """The tooltip of the transcript's characters right after the first `text`."""
    found = window.chat.view.document().find(text)
    assert not found.isNull(), f"{text!r} is not in the transcript"
    cursor = QTextCursor(found)
    cursor.setPosition(found.selectionEnd())
    return cursor.charFormat().toolTip()


async def test_search_finds_the_paraphrase_an_answer_cites_it_and_forget_removes_it() -> None:
    answer = "Your flight to Lisbon is on the 14th of March [1]."
    async with window_over([answer], delay=0.1) as (window, bridge, provider):
        pane, memory = window.memory, bridge.memory
        assert pane.stack.currentWidget() is pane.main_page
        plane = await memory.remember(PLANE, tags=["travel"])
        wifi = await memory.remember(WIFI)
        assert plane.embedded and wifi.embedded, plane.warning
        await wait_until(lambda: len(pane.results.rows()) == 2, message="the new notes were not listed")
        assert [r.source_id for r in pane.results.rows()] == [wifi.source_id, plane.source_id], "newest first"
        assert pane.results_label.text() == "Newest memories (2)"

        pane.search("flight date")  # no word in common with the note: only its meaning matches
        await pane.settle()
        found = pane.results.rows()
        assert found[0].source_id == plane.source_id and found[0].is_hit
        assert found[0].similarity is not None and found[0].similarity > (found[1].similarity or 0) + 0.1
        top = pane.results.topLevelItem(0)
        assert top.text(Col.MEMORY) == f"note {plane.source_id[-8:]}"
        assert top.text(Col.KIND) == "note" and top.text(Col.MATCH) == f"{found[0].similarity * 100:.0f}%"
        assert top.text(Col.DATE)[:4].isdigit()
        pane.results.select_index(0)
        assert pane.detail.text.toPlainText() == PLANE
        assert pane.detail.title.text() == f"note {plane.source_id[-8:]}"
        assert f"note {plane.source_id}" in pane.detail.meta.text() and "private" in pane.detail.meta.text()
        await wait_until(lambda: "2 chunks" in pane.status_label.text(), message=pane.status_label.text())
        assert "model loaded" in pane.status_label.text() and pane.problem.isHidden()
        window.grab().save(str(SCREENSHOTS / "memory_pane.png"))

        pane.search("flight date", "Documents")
        await pane.settle()
        assert pane.results.rows() == [] and pane.results_label.text() == "No memory matches."
        assert pane.detail.row is None and not pane.detail.forget_button.isEnabled()

        ended: list[object] = []
        bridge.turnEnded.connect(lambda _sid, final: ended.append(final))
        window.chat.ask("When is my flight to Lisbon?")
        line = f"Memories used: [1] note {plane.source_id[-8:]}"
        await wait_until(lambda: line in chat_text(window), message="no line under the streaming answer")
        assert not ended, "shown while the answer streams (the answer takes over a second)"
        await wait_until(lambda: bool(ended), timeout=30, message="the turn did not end")
        await wait_until(lambda: not tasks._running, message="the transcript was not reloaded")
        text = chat_text(window)
        assert text.count(line) == 1, text
        assert text.index(answer) < text.index(line), "the line sits under the answer"
        assert f"note {wifi.source_id[-8:]}" not in text, "the unrelated note was not recalled"
        assert PLANE in tooltip_at(window, "Memories used: [1]")
        window.grab().save(str(SCREENSHOTS / "memory_pane_answer.png"))
        assert PLANE in "\n".join(m.content for m in provider.calls[0] if m.role == "system")

        timeline = window.timeline
        await timeline.settle()
        label = f"Recalled 1 memory: note {plane.source_id[-8:]}"
        await wait_until(lambda: label in [item.text(0) for item in rows(timeline.tree)], message="no recall row")
        [recall_row] = [item for item in rows(timeline.tree) if item.text(0) == label]
        timeline.tree.setCurrentItem(recall_row)
        detail = timeline.detail.toPlainText()
        assert f"[1] note {plane.source_id[-8:]}" in detail and "% match" in detail and PLANE in detail
        timeline.filter_combo.setCurrentText("Memory")
        assert not recall_row.isHidden()
        assert all(item.isHidden() for item in rows(timeline.tree) if item.text(0).startswith("llm.response"))

        pane.search("flight date")
        await pane.settle()
        pane.results.select_index(0)
        pane.detail.forget_button.click()
        box = pane._confirm
        assert isinstance(box, QMessageBox) and box.isVisible()
        box.button(QMessageBox.StandardButton.Yes).click()
        await wait_until(lambda: plane.source_id not in [r.source_id for r in pane.results.rows()])
        assert [s["id"] for s in await memory.sources()] == [wifi.source_id]
        assert pane.detail.row is None
        await wait_until(lambda: "· 1 chunk ·" in pane.status_label.text(), message=pane.status_label.text())


async def test_a_folder_is_indexed_with_progress_and_its_skipped_file_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "notes"
    (folder / "deep").mkdir(parents=True)
    (folder / "alpha.md").write_text("# Alpha\n\nThe alpha project ships in June.\n", encoding="utf-8")
    (folder / "beta.md").write_text("# Beta\n\nBeta keeps its data in Postgres.\n", encoding="utf-8")
    (folder / "photo.txt").write_bytes(bytes(range(256)) * 8)
    chosen = [str(folder)]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a: chosen[0]))
    async with window_over() as (window, bridge, _):
        pane, docs = window.memory, window.memory.documents
        assert docs.empty.isVisibleTo(pane) and docs.folders.isHidden() and docs.bar.isHidden()
        seen: list[tuple[str, int, int, bool]] = []
        bridge.memory.scanProgress.connect(
            lambda p: seen.append((p.state, docs.bar.value(), docs.bar.maximum(), docs.bar.isVisibleTo(pane)))
        )
        docs.add_button.click()
        await wait_until(lambda: bool(seen) and seen[-1][0] == "done", timeout=MODEL_LOAD, message=str(seen))
        assert seen[0][0] == "scanning" and seen[0][3], "the bar shows while files are listed"
        assert ("indexing", 3, 3, True) in seen, seen
        assert docs.bar.isHidden(), "no scan runs: no bar"
        await wait_until(lambda: [f.get("files") for f in docs.folder_rows()] == [2], message=str(docs.folder_rows()))
        item = docs.folders.topLevelItem(0)
        assert item.text(0) == str(folder.resolve()) and item.text(1) == "2" and item.text(2) == "1"
        assert item.text(3) != "not yet" and docs.title.text() == "<b>Documents</b> · 2 files indexed"
        assert docs.skipped_toggle.isVisibleTo(pane) and docs.skipped_toggle.text() == "Skipped files (1)"
        assert docs.skipped.isHidden(), "collapsed until asked for"
        docs.skipped_toggle.click()
        assert docs.skipped.isVisibleTo(pane)
        assert docs.skipped_rows() == [(str(folder.resolve() / "photo.txt"), "binary file")]
        await wait_until(lambda: len(pane.results.rows()) == 2, message="the documents were not listed")
        assert {r.title for r in pane.results.rows()} == {"Alpha", "Beta"}, "titled by their first heading"
        await wait_until(lambda: "2 chunks" in pane.status_label.text(), message=pane.status_label.text())
        window.grab().save(str(SCREENSHOTS / "memory_pane_documents.png"))

        pane.search("When does the project ship?")
        await pane.settle()
        best = pane.results.rows()[0]
        assert best.kind == "document" and best.uri == str(folder.resolve() / "alpha.md")
        pane.results.select_index(0)
        assert "ships in June" in pane.detail.text.toPlainText()
        assert str(folder.resolve() / "alpha.md") in pane.detail.meta.text()

        chosen[0] = str(folder / "deep")  # inside the indexed folder: refused, with what to do
        docs.add_button.click()
        await wait_until(lambda: pane.error.isVisible(), message="no error for an overlapping folder")
        assert "overlaps" in pane.error.plain and "→" in pane.error.plain
        assert len(docs.folder_rows()) == 1

        docs.folders.setCurrentItem(docs.folders.topLevelItem(0))
        box = docs.confirm_remove()
        assert box is not None and box.isVisible()
        box.button(QMessageBox.StandardButton.Yes).click()
        await wait_until(lambda: not docs.folder_rows(), message="the folder stayed")
        await pane.settle()
        assert docs.empty.isVisibleTo(pane) and not docs.skipped_toggle.isVisibleTo(pane)
        assert not [s for s in await bridge.memory.sources() if s["kind"] == "document"]


async def test_memory_off_explains_itself_and_commands_say_why() -> None:
    async with window_over(overrides={"memory": {"enabled": False}}) as (window, bridge, _):
        pane = window.memory
        assert not bridge.memory.available
        assert pane.stack.currentWidget() is pane.off_page and "Memory is off" in pane.off_label.text()
        errors: list[dict[str, str]] = []
        bridge.memory.errorRaised.connect(errors.append)
        assert await bridge.memory.forget("anything") is None
        assert errors and errors[0]["message"] == "Memory is off." and "memory.enabled" in errors[0]["fix"]


async def test_without_an_embedding_model_the_pane_warns_and_still_matches_words() -> None:
    broken = {"memory": {"embedder": "gguf", "model_path": ""}}
    async with window_over(overrides=broken) as (window, bridge, _):
        pane = window.memory
        await wait_until(lambda: pane.problem.isVisible(), message="no warning about semantic search")
        assert pane.problem.kind == "error" and "Semantic search is unavailable" in pane.problem.plain
        assert "memory.model_path" in pane.problem.plain, "the fix is shown too"
        saved = await bridge.memory.remember(WIFI)
        assert not saved.embedded and "full-text search only" in saved.warning
        pane.search("fridge")
        await pane.settle()
        [row] = pane.results.rows()
        assert row.source_id == saved.source_id and row.similarity is None
        assert pane.results.topLevelItem(0).text(Col.MATCH) == "—"


def test_an_answer_gets_the_memories_of_the_turn_that_wrote_it() -> None:
    """Turns are matched to answers by time; a regenerated answer belongs to the new turn, and only a turn's
    final answer (after its tool calls) gets the line."""

    def entry(role: str, content: str, at: str) -> TranscriptEntry:
        return TranscriptEntry(ChatMessage(role, content), f"2026-01-01T10:00:{at}Z")

    first, second = [{"citation": "note aaaaaaaa"}], [{"citation": "note bbbbbbbb"}]
    entries = [
        entry("user", "q1", "00"),
        entry("assistant", "", "02"),  # a tool call, no text
        entry("assistant", "a1", "03"),
        entry("user", "q2", "04"),
        entry("assistant", "a2 regenerated", "08"),
    ]
    turns = [("2026-01-01T10:00:00Z", first), ("2026-01-01T10:00:04Z", []), ("2026-01-01T10:00:06Z", second)]
    assert answer_memories(entries, turns) == {2: first, 4: second}
    assert answer_memories(entries, [("2026-01-01T10:00:04Z", second)]) == {4: second}
