"""read_file, list_dir, write_file and edit_file: they work inside the workspace and nowhere else."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.errors import SandboxViolation, ToolError
from core.settings import ToolSettings
from core.tools import files
from core.tools.files import EditFileTool, ListDirTool, ReadFileTool, WriteFileTool
from core.tools.registry import RiskTier, ToolContext, ToolOutput

ALL_TOOLS = [ReadFileTool(), ListDirTool(), WriteFileTool(), EditFileTool()]


@pytest.fixture
def ctx(workspace: Path) -> ToolContext:
    return ToolContext(workspace=workspace, session_id="s1", settings=ToolSettings(read_max_bytes=1024))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret")
    return folder


async def call(tool: Any, ctx: ToolContext, **args: Any) -> ToolOutput:
    jsonschema.Draft202012Validator(tool.spec.parameters).validate(args)  # what the executor does first
    return await tool.run(args, ctx)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.shoal-tmp")]


# --- schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=lambda t: t.spec.name)
def test_schemas_are_strict(tool: Any) -> None:
    schema = tool.spec.parameters
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert "required" in schema
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"path": "a", "surprise": 1}, schema)


def test_risk_tiers() -> None:
    assert [t.spec.risk for t in ALL_TOOLS] == [RiskTier.READ, RiskTier.READ, RiskTier.WRITE, RiskTier.WRITE]


# --- escapes through the tools -------------------------------------------------------------------


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=lambda t: t.spec.name)
@pytest.mark.parametrize("path", ["../outside/secret.txt", "/etc/passwd", "~/x", "leak/secret.txt"])
async def test_every_tool_refuses_paths_out_of_the_workspace(
    tool: Any, path: str, ctx: ToolContext, workspace: Path, outside: Path
) -> None:
    (workspace / "leak").symlink_to(outside)
    args = {"path": path, "content": "pwned", "old_text": "top", "new_text": "pwned"}
    args = {k: v for k, v in args.items() if k in tool.spec.parameters["properties"]}
    with pytest.raises(SandboxViolation):
        await call(tool, ctx, **args)
    assert (outside / "secret.txt").read_text() == "top secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


# --- read_file -----------------------------------------------------------------------------------


async def test_read_returns_the_text(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.txt").write_text("one\ntwo\nthree\n")
    out = await call(ReadFileTool(), ctx, path="a.txt")
    assert out.text == "one\ntwo\nthree\n"
    assert out.data["lines"] == 3 and out.data["partial"] is False


async def test_read_offset_and_limit_select_lines(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = await call(ReadFileTool(), ctx, path="a.txt", offset=3, limit=2)
    assert out.text.startswith("line 3\nline 4\n[lines 3-4 of 10")
    assert "offset=5" in out.text
    assert out.data["partial"] is True
    with pytest.raises(ToolError, match="past the end"):
        await call(ReadFileTool(), ctx, path="a.txt", offset=11)


async def test_read_refuses_binary_large_and_non_utf8(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "bin.dat").write_bytes(b"abc\x00def")
    (workspace / "big.txt").write_text("x" * 2000)
    (workspace / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ToolError, match="binary"):
        await call(ReadFileTool(), ctx, path="bin.dat")
    with pytest.raises(ToolError, match=r"2,000 bytes; the limit is 1,024"):
        await call(ReadFileTool(), ctx, path="big.txt")
    with pytest.raises(ToolError, match="not UTF-8"):
        await call(ReadFileTool(), ctx, path="latin1.txt")


async def test_read_refuses_folders_missing_files_and_pipes(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "sub").mkdir()
    os.mkfifo(workspace / "pipe")
    with pytest.raises(ToolError, match="folder"):
        await call(ReadFileTool(), ctx, path="sub")
    with pytest.raises(ToolError, match="No such file"):
        await call(ReadFileTool(), ctx, path="missing.txt")
    with pytest.raises(ToolError, match="not a regular file"):  # and does not hang waiting for a writer
        await call(ReadFileTool(), ctx, path="pipe")


async def test_settings_default_when_the_context_has_none(workspace: Path) -> None:
    (workspace / "a.txt").write_text("x" * 5000)  # over 1024, under the 1 MB default
    out = await ReadFileTool().run({"path": "a.txt"}, ToolContext(workspace=workspace, session_id="s"))
    assert len(out.text) == 5000


# --- list_dir ------------------------------------------------------------------------------------


async def test_list_shows_sorted_entries_with_type_and_size(ctx: ToolContext, workspace: Path, outside: Path) -> None:
    (workspace / "b.txt").write_text("12345")
    (workspace / "a-dir").mkdir()
    (workspace / "c-link").symlink_to(outside)
    out = await call(ListDirTool(), ctx)
    assert [e["name"] for e in out.data["entries"]] == ["a-dir", "b.txt", "c-link"]
    assert [e["type"] for e in out.data["entries"]] == ["dir", "file", "symlink"]
    assert out.data["entries"][1]["size"] == 5
    assert out.text.splitlines() == [".: 3 entries", "  a-dir/", "  b.txt  (5 bytes)", "  c-link  (symlink)"]
    assert "secret" not in out.text  # a link out is listed, never followed


async def test_list_caps_long_folders_with_a_note(
    ctx: ToolContext, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_LIST_ENTRIES", 5)
    for i in range(8):
        (workspace / f"f{i}.txt").write_text("x")
    out = await call(ListDirTool(), ctx, path=".")
    assert len(out.data["entries"]) == 5 and out.data["total"] == 8 and out.data["truncated"] is True
    assert "showing the first 5 of 8" in out.text


async def test_list_refuses_a_file(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.txt").write_text("x")
    with pytest.raises(ToolError, match="not a folder"):
        await call(ListDirTool(), ctx, path="a.txt")


# --- write_file ----------------------------------------------------------------------------------


async def test_write_creates_parents_and_replaces(ctx: ToolContext, workspace: Path) -> None:
    out = await call(WriteFileTool(), ctx, path="deep/er/new.md", content="héllo\n")
    assert (workspace / "deep/er/new.md").read_text(encoding="utf-8") == "héllo\n"
    assert out.data == {"path": "deep/er/new.md", "bytes": 7, "created": True}
    (workspace / "deep/er/new.md").chmod(0o640)
    out = await call(WriteFileTool(), ctx, path="deep/er/new.md", content="bye")
    assert out.data["created"] is False and "Replaced" in out.text
    assert (workspace / "deep/er/new.md").read_text() == "bye"
    assert (workspace / "deep/er/new.md").stat().st_mode & 0o777 == 0o640  # permissions kept
    assert leftovers(workspace) == []


async def test_write_creates_a_missing_workspace(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path / "fresh", session_id="s")
    await WriteFileTool().run({"path": "a.txt", "content": "x"}, ctx)
    assert (tmp_path / "fresh" / "a.txt").read_text() == "x"


async def test_write_refuses_links_even_inside(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "real.txt").write_text("original")
    (workspace / "alias.txt").symlink_to("real.txt")
    with pytest.raises(SandboxViolation, match="symbolic link"):
        await call(WriteFileTool(), ctx, path="alias.txt", content="changed")
    assert (workspace / "real.txt").read_text() == "original"
    assert (workspace / "alias.txt").is_symlink()


async def test_write_refuses_a_folder(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "sub").mkdir()
    for path in ("sub", "."):
        with pytest.raises(ToolError, match="folder"):
            await call(WriteFileTool(), ctx, path=path, content="x")


@pytest.mark.parametrize("failing", ["fsync", "replace"])
async def test_write_is_atomic_when_it_fails_midway(
    ctx: ToolContext, workspace: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = workspace / "keep.txt"
    target.write_text("original content")

    def boom(*_args: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, failing, boom)
    with pytest.raises(ToolError, match="Input/output error"):
        await call(WriteFileTool(), ctx, path="keep.txt", content="new content that never lands")
    monkeypatch.undo()
    assert target.read_text() == "original content"
    assert leftovers(workspace) == []
    assert sorted(p.name for p in workspace.iterdir()) == ["keep.txt"]


# --- edit_file -----------------------------------------------------------------------------------


async def test_edit_replaces_a_unique_match(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.py").write_text("x = 1\ny = 2\n")
    out = await call(EditFileTool(), ctx, path="a.py", old_text="y = 2", new_text="y = 3")
    assert (workspace / "a.py").read_text() == "x = 1\ny = 3\n"
    assert out.data["replacements"] == 1
    assert leftovers(workspace) == []


async def test_edit_fails_clearly_when_missing_or_ambiguous(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.txt").write_text("dup\ndup\n")
    with pytest.raises(ToolError, match="not found") as missing:
        await call(EditFileTool(), ctx, path="a.txt", old_text="nope", new_text="x")
    assert "exact text" in missing.value.fix
    with pytest.raises(ToolError, match="occurs 2 times") as ambiguous:
        await call(EditFileTool(), ctx, path="a.txt", old_text="dup", new_text="one")
    assert "replace_all" in ambiguous.value.fix
    assert (workspace / "a.txt").read_text() == "dup\ndup\n"
    with pytest.raises(ToolError, match="same"):
        await call(EditFileTool(), ctx, path="a.txt", old_text="dup", new_text="dup")


async def test_edit_replace_all(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.txt").write_text("dup\ndup\n")
    out = await call(EditFileTool(), ctx, path="a.txt", old_text="dup", new_text="one", replace_all=True)
    assert (workspace / "a.txt").read_text() == "one\none\n"
    assert out.data["replacements"] == 2


async def test_edit_matches_crlf_files(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "w.txt").write_bytes(b"a\r\nb\r\nc\r\n")
    await call(EditFileTool(), ctx, path="w.txt", old_text="a\nb", new_text="A\nB")
    assert (workspace / "w.txt").read_bytes() == b"A\r\nB\r\nc\r\n"


async def test_edit_is_atomic_and_refuses_links(
    ctx: ToolContext, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / "a.txt").write_text("hello world")
    (workspace / "alias.txt").symlink_to("a.txt")
    with pytest.raises(SandboxViolation):
        await call(EditFileTool(), ctx, path="alias.txt", old_text="hello", new_text="bye")

    def boom(*_args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(ToolError, match="No space left"):
        await call(EditFileTool(), ctx, path="a.txt", old_text="hello", new_text="bye")
    monkeypatch.undo()
    assert (workspace / "a.txt").read_text() == "hello world"
    assert leftovers(workspace) == []
