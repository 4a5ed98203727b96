"""The "Memories used: [1] … · [2] …" line under an answer that automatic recall fed memories to.

The model is told to cite recalled memories as [n]; this line says what each number stands for, so a person
can check a claim against its source. Each citation carries a tooltip with the text that was recalled and
how close it was to the question. Written into the transcript document by the message view.
"""

from __future__ import annotations

import json
from typing import Any

from ui.widgets.doc_writer import DocWriter
from ui.widgets.memory_format import item_tooltip

MEMORY_PART = "memory"  # a live part of this kind carries the recalled items as JSON


def live_part(items: list[dict[str, Any]]) -> tuple[str, str]:
    """A live answer's part for a `MemoryRecalled` event (parts are (kind, text) pairs)."""
    return MEMORY_PART, json.dumps(items, ensure_ascii=False)


def items_of(parts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The recalled items among a live answer's parts (normally one event per turn)."""
    found: list[dict[str, Any]] = []
    for kind, value in parts:
        if kind == MEMORY_PART:
            found += json.loads(value)
    return found


def write_memories(writer: DocWriter, items: list[dict[str, Any]]) -> None:
    """A small muted paragraph at the end of the document: the label, then "[n] citation" per item."""
    if not items:
        return
    cursor = writer.end()
    muted = writer.char(muted=True, small=True)
    writer.block(cursor, muted, top=4)
    cursor.insertText("Memories used: ", muted)
    for number, item in enumerate(items, start=1):
        if number > 1:
            cursor.insertText(" · ", muted)
        mark = writer.char(small=True)
        mark.setForeground(writer.colors.accent)
        mark.setToolTip(item_tooltip(number, item))
        cursor.insertText(f"[{number}]", mark)
        cited = writer.char(muted=True, small=True)
        cited.setToolTip(item_tooltip(number, item))
        cursor.insertText(f" {item.get('citation', '')}", cited)
    cursor.setCharFormat(muted)
