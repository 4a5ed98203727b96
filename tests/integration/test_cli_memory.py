"""`shoal docs …` and `shoal memory …` as a user runs them: a folder indexed with its skipped file reported,
then a paraphrase found from the terminal and a memory forgotten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        timeout=180,
    )


def test_docs_add_status_then_search_and_forget_from_the_terminal(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "trip.md").write_text("# Trip\n\nThe train to Porto leaves platform 4 at 07:15 on Saturday.\n")
    (notes / "image.txt").write_bytes(b"\x89PNG\x00\x00binary")

    added = shoal("docs", "add", str(notes))
    assert added.returncode == 0, added.stderr
    assert "1 indexed" in added.stdout and "1 skipped" in added.stdout
    assert f"skipped {notes / 'image.txt'}: binary file" in added.stdout

    status = shoal("docs", "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["documents"] == 1 and data["folders"][0]["path"] == str(notes)
    assert data["skipped"] == [[str(notes / "image.txt"), "binary file"]]

    found = shoal("memory", "search", "when does my rail journey depart", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["kind"] == "document" and "Porto" in hits[0]["text"] and hits[0]["citation"] == "Trip — Trip"

    forgot = shoal("memory", "forget", hits[0]["source_id"])
    assert forgot.returncode == 0, forgot.stderr
    again = shoal("memory", "search", "Porto", "--mode", "text", "--json")
    assert json.loads(again.stdout) == []
    missing = shoal("memory", "forget", "nothing-like-this")
    assert missing.returncode == 2 and "No memory has the id" in missing.stderr
