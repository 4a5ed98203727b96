"""The workspace sandbox: every way out is refused with a reason, every way in still works."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import SandboxViolation, ToolError
from core.tools.sandbox import Workspace


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret")
    return folder


@pytest.fixture
def ws(workspace: Path) -> Workspace:
    (workspace / "notes").mkdir()
    (workspace / "notes" / "todo.md").write_text("- milk\n")
    return Workspace(workspace)


TEXT_ESCAPES = [
    pytest.param("", "empty", id="empty"),
    pytest.param("   ", "empty", id="blank"),
    pytest.param("..", "'..'", id="dotdot"),
    pytest.param("../", "'..'", id="dotdot-slash"),
    pytest.param("../../etc/passwd", "'..'", id="dotdot-etc-passwd"),
    pytest.param("notes/../../outside/secret.txt", "'..'", id="dotdot-after-folder"),
    pytest.param("./../x", "'..'", id="dot-dotdot"),
    pytest.param("/etc/passwd", "Absolute", id="absolute"),
    pytest.param("/", "Absolute", id="root"),
    pytest.param("~", "'~'", id="tilde"),
    pytest.param("~/.ssh/id_rsa", "'~'", id="tilde-slash"),
    pytest.param("~root/.bashrc", "'~'", id="tilde-user"),
    pytest.param("notes\x00.md", "NUL", id="nul-byte"),
    pytest.param("a/" * 600, "characters long", id="very-long-path"),
    pytest.param("x" * 256, "component", id="long-component"),
    pytest.param("C:\\Windows\\system32", "drive", id="windows-drive-backslash"),
    pytest.param("c:/Windows", "drive", id="windows-drive-slash"),
    pytest.param("\\\\server\\share\\x", "UNC", id="unc-backslash"),
    pytest.param("//server/share/x", "UNC", id="unc-slash"),
    pytest.param("notes\\..\\..\\etc", "Backslash", id="backslash-dotdot"),
    pytest.param("notes/\x1b[31mred", "control", id="control-char"),
]


@pytest.mark.parametrize(("user_path", "reason"), TEXT_ESCAPES)
def test_path_text_escapes_are_refused_with_a_reason(ws: Workspace, user_path: str, reason: str) -> None:
    with pytest.raises(SandboxViolation) as info:
        ws.resolve(user_path)
    assert reason in info.value.message
    assert info.value.fix  # every refusal says what to do instead


def _link(ws: Workspace, name: str, target: str | Path) -> None:
    path = ws.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize(
    ("link_name", "target", "user_path"),
    [
        pytest.param("leak.txt", "{outside}/secret.txt", "leak.txt", id="file-link-out"),
        pytest.param("leakdir", "{outside}", "leakdir/secret.txt", id="dir-link-out"),
        pytest.param("leakdir", "{outside}", "leakdir", id="dir-link-itself"),
        pytest.param("dangling", "{outside}/not-yet.txt", "dangling", id="dangling-link-out"),
        pytest.param("relative", "../outside/secret.txt", "relative", id="relative-link-out"),
        pytest.param("notes/deep", "/", "notes/deep/etc/passwd", id="nested-link-to-root"),
        pytest.param("up", "..", "up/outside/secret.txt", id="link-to-parent"),
        pytest.param("leakdir", "{outside}", "leakdir/../outside/secret.txt", id="dotdot-after-link"),
    ],
)
def test_symlinks_out_of_the_workspace_are_refused(
    ws: Workspace, outside: Path, link_name: str, target: str, user_path: str
) -> None:
    _link(ws, link_name, target.format(outside=outside))
    with pytest.raises(SandboxViolation) as info:
        ws.resolve(user_path)
    assert "symbolic link" in info.value.message
    assert link_name in info.value.message  # names the link to remove


def test_a_chain_of_links_that_ends_outside_is_refused(ws: Workspace, outside: Path) -> None:
    _link(ws, "b", outside)
    _link(ws, "a", "b")
    with pytest.raises(SandboxViolation):
        ws.resolve("a/secret.txt")


@pytest.mark.parametrize(
    ("user_path", "expected"),
    [
        ("notes/todo.md", "notes/todo.md"),
        ("./notes//todo.md", "notes/todo.md"),
        ("notes/../notes/todo.md", "notes/todo.md"),
        ("new/folder/file.txt", "new/folder/file.txt"),
        (".", "."),
        ("notes/~backup", "notes/~backup"),
        ("file with spaces & symbols;.txt", "file with spaces & symbols;.txt"),
    ],
)
def test_paths_inside_resolve_under_the_root(ws: Workspace, user_path: str, expected: str) -> None:
    resolved = ws.resolve(user_path)
    assert resolved.is_relative_to(ws.root)
    assert ws.relative(resolved) == expected


def test_links_that_stay_inside_are_followed(ws: Workspace) -> None:
    _link(ws, "shortcut", "notes")
    assert ws.resolve("shortcut/todo.md") == ws.root / "notes" / "todo.md"


def test_must_exist_reports_a_missing_file_as_a_tool_error(ws: Workspace) -> None:
    with pytest.raises(ToolError) as info:
        ws.resolve("nope.txt", must_exist=True)
    assert not isinstance(info.value, SandboxViolation)
    assert "nope.txt" in info.value.message
    assert ws.resolve("notes/todo.md", must_exist=True).is_file()


def test_a_workspace_reached_through_a_link_still_works(tmp_path: Path, workspace: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(workspace)
    (workspace / "a.txt").write_text("a")
    ws = Workspace(alias)
    assert ws.root == Path(os.path.realpath(workspace))
    assert ws.resolve("a.txt").read_text() == "a"


def test_relative_shows_outside_paths_unchanged(ws: Workspace) -> None:
    assert ws.relative(ws.root) == "."
    assert ws.relative("/etc/passwd") == "/etc/passwd"


def test_non_string_paths_are_refused(ws: Workspace) -> None:
    with pytest.raises(SandboxViolation):
        ws.resolve(None)  # type: ignore[arg-type]
