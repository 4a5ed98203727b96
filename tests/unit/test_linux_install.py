"""packaging/linux/install.sh, run for real on a fake unpacked tarball (a stub `shoal` executable), and
resources/shoal.desktop checked with desktop-file-validate."""

from __future__ import annotations

import configparser
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SH = ROOT / "packaging" / "linux" / "install.sh"
DESKTOP = ROOT / "resources" / "shoal.desktop"
ICONS = ROOT / "resources" / "icons"
PNG_SIZES = sorted(int(p.stem.removeprefix("shoal-")) for p in ICONS.glob("shoal-*.png"))
VALIDATOR_HINT = "sudo apt-get install desktop-file-utils (packaging/system-deps.sh installs it)"
STUB = '#!/bin/sh\necho "shoal-stub $@"\n'

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="install.sh installs the Linux tarball")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.fail(f"desktop-file-validate is missing: {VALIDATOR_HINT}")
    return subprocess.run([tool, str(path)], capture_output=True, text=True)


def read_entry(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def make_unpacked(folder: Path, stub: str = STUB, build_info: str | None = None) -> Path:
    """What `tar xzf shoal-<version>-linux-<arch>-<flavour>.tar.gz` leaves: shoal/, install.sh, the entry, icons."""
    bundle = folder / "shoal"
    (bundle / "_internal").mkdir(parents=True)
    (bundle / "_internal" / "libmarker.so").write_text("marker")
    (bundle / "shoal").write_text(stub)
    (bundle / "shoal").chmod(0o755)
    if build_info is not None:
        (bundle / "BUILD-INFO.json").write_text(build_info)
    shutil.copy2(INSTALL_SH, folder / "install.sh")
    shutil.copy2(DESKTOP, folder / "shoal.desktop")
    shutil.copytree(ICONS, folder / "icons")
    return folder


class Install:
    """One fake user: HOME and the XDG folders in tmp_path, an install prefix, and the unpacked tarball."""

    def __init__(self, tmp_path: Path, prefix_name: str = "prefix") -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.prefix = tmp_path / prefix_name
        self.pkg = make_unpacked(tmp_path / "shoal-0.1.0-linux-test-slim")
        self.env = {
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
        }

    @property
    def share(self) -> Path:
        return self.prefix / "share"

    @property
    def app(self) -> Path:
        return self.share / "shoal" / "app"

    @property
    def exe(self) -> Path:
        return self.app / "shoal"

    @property
    def launcher(self) -> Path:
        return self.prefix / "bin" / "shoal"

    @property
    def entry(self) -> Path:
        return self.share / "applications" / "shoal.desktop"

    @property
    def autostart(self) -> Path:
        return self.tmp / "xdg-config" / "autostart" / "shoal.desktop"

    def run(
        self, *args: str, script: Path | None = None, prefix: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        command = [str(script or self.pkg / "install.sh"), *args]
        if prefix:
            command += ["--prefix", str(self.prefix)]
        return subprocess.run(command, capture_output=True, text=True, env={**self.env, **env}, timeout=60)

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"install.sh {args} failed:\n{result.stdout}\n{result.stderr}"
        return result


@pytest.fixture
def inst(tmp_path: Path) -> Install:
    return Install(tmp_path)


def files_under(*folders: Path) -> set[Path]:
    return {p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


# --- the entry in the repository ------------------------------------------------------------------------------


def test_repository_desktop_entry_is_valid() -> None:
    result = validate(DESKTOP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", f"warnings or hints:\n{result.stdout}{result.stderr}"


def test_repository_entry_runs_shoal_so_the_installer_can_rewrite_it() -> None:
    entry = read_entry(DESKTOP)
    assert entry["Desktop Entry"]["Exec"] == "shoal"
    assert entry["Desktop Entry"]["Icon"] == "shoal"
    assert entry["Desktop Action quick-ask"]["Exec"] == "shoal --quick-ask"


def test_install_script_is_executable_in_the_repository() -> None:
    # the tarball keeps the file mode: `./install.sh` must work right after unpacking
    assert os.access(INSTALL_SH, os.X_OK), f"chmod +x {INSTALL_SH.relative_to(ROOT)}"
    assert INSTALL_SH.read_text().startswith("#!/usr/bin/env bash\n")


# --- install --------------------------------------------------------------------------------------------------


def test_install_puts_everything_in_place(inst: Install) -> None:
    result = inst.ok()

    assert inst.exe.read_text() == STUB and os.access(inst.exe, os.X_OK)
    assert (inst.app / "_internal" / "libmarker.so").read_text() == "marker"
    assert (inst.share / "shoal" / "install.sh").read_bytes() == INSTALL_SH.read_bytes()
    assert inst.launcher.is_symlink()
    assert inst.launcher.resolve() == inst.exe.resolve()
    ran = subprocess.run([str(inst.launcher), "chat", "--x"], capture_output=True, text=True, timeout=30)
    assert ran.stdout == "shoal-stub chat --x\n"

    entry = read_entry(inst.entry)
    assert entry["Desktop Entry"]["Exec"] == str(inst.exe)
    assert entry["Desktop Action quick-ask"]["Exec"] == f"{inst.exe} --quick-ask"
    assert Path(entry["Desktop Entry"]["Exec"]).is_absolute()
    assert entry["Desktop Entry"]["Icon"] == "shoal"
    source = read_entry(DESKTOP)
    for section in source.sections():  # nothing but the Exec lines changed
        for key, value in source[section].items():
            if key != "Exec":
                assert entry[section][key] == value, (section, key)
    checked = validate(inst.entry)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr

    hicolor = inst.share / "icons" / "hicolor"
    assert PNG_SIZES == [16, 32, 48, 64, 128, 256]
    for size in PNG_SIZES:
        installed = hicolor / f"{size}x{size}" / "apps" / "shoal.png"
        assert installed.read_bytes() == (ICONS / f"shoal-{size}.png").read_bytes(), size
    assert (hicolor / "scalable" / "apps" / "shoal.svg").read_bytes() == (ICONS / "shoal.svg").read_bytes()

    assert not inst.autostart.exists()
    assert "run: shoal" in result.stdout
    assert f'"{inst.share}/shoal/install.sh" --uninstall --prefix "{inst.prefix}"' in result.stdout


def test_a_path_with_spaces_is_quoted_in_exec(tmp_path: Path) -> None:
    inst = Install(tmp_path, prefix_name="My Apps")
    inst.ok()
    entry = read_entry(inst.entry)
    assert entry["Desktop Entry"]["Exec"] == f'"{inst.exe}"'
    assert shlex.split(entry["Desktop Action quick-ask"]["Exec"]) == [str(inst.exe), "--quick-ask"]
    checked = validate(inst.entry)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr
    ran = subprocess.run([str(inst.launcher), "doctor"], capture_output=True, text=True, timeout=30)
    assert ran.stdout == "shoal-stub doctor\n"


def test_default_locations_follow_xdg_and_warn_when_bin_is_not_on_path(inst: Install) -> None:
    result = inst.ok(prefix=False)
    data = inst.tmp / "xdg-data"
    exe = data / "shoal" / "app" / "shoal"
    launcher = inst.home / ".local" / "bin" / "shoal"
    assert exe.read_text() == STUB
    assert launcher.is_symlink() and launcher.resolve() == exe.resolve()
    assert read_entry(data / "applications" / "shoal.desktop")["Desktop Entry"]["Exec"] == str(exe)
    assert (data / "icons" / "hicolor" / "48x48" / "apps" / "shoal.png").is_file()
    assert not inst.prefix.exists()
    assert f"{inst.home}/.local/bin is not on your PATH" in result.stderr

    on_path = inst.ok(prefix=False, PATH=f"{inst.home}/.local/bin:{os.environ['PATH']}")
    assert "is not on your PATH" not in on_path.stderr


def test_reinstall_replaces_the_app_and_keeps_user_data(inst: Install) -> None:
    inst.ok()
    (inst.app / "left-from-old-version.txt").write_text("old")
    user_data = inst.share / "shoal" / "timeline.db"  # the app's own data folder is the app folder's parent
    user_data.write_text("conversations")
    (inst.pkg / "shoal" / "shoal").write_text('#!/bin/sh\necho "shoal-stub-v2 $@"\n')

    result = inst.ok()

    assert "Replaced the app" in result.stdout
    assert not (inst.app / "left-from-old-version.txt").exists()
    ran = subprocess.run([str(inst.launcher)], capture_output=True, text=True, timeout=30)
    assert ran.stdout == "shoal-stub-v2 \n"
    assert sorted(p.name for p in (inst.share / "shoal").iterdir()) == ["app", "install.sh", "timeline.db"]
    assert user_data.read_text() == "conversations"


def test_an_interrupted_install_leaves_nothing_behind_after_the_next(inst: Install) -> None:
    stale = inst.share / "shoal" / ".app-new.12345"
    stale.mkdir(parents=True)
    (stale / "half-copied").write_text("x")
    inst.ok()
    assert sorted(p.name for p in (inst.share / "shoal").iterdir()) == ["app", "install.sh"]


def test_autostart_writes_the_login_entry(inst: Install) -> None:
    result = inst.ok("--autostart")
    assert inst.autostart.read_text() == inst.entry.read_text()
    assert read_entry(inst.autostart)["Desktop Entry"]["Exec"] == str(inst.exe)
    checked = validate(inst.autostart)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr
    assert str(inst.autostart) in result.stdout


def test_works_without_the_cache_tools(inst: Install, tmp_path: Path) -> None:
    """update-desktop-database and gtk-update-icon-cache are optional: a PATH with only the basics."""
    tools = tmp_path / "tools"
    tools.mkdir()
    basics = ("bash env dirname cp mv rm mkdir ln readlink find install chmod sed head uname getconf sort basename "
              "cat rmdir")  # fmt: skip
    for name in basics.split():
        found = shutil.which(name)
        assert found is not None, name
        (tools / name).symlink_to(found)
    result = inst.ok("--autostart", PATH=str(tools))
    assert [line for line in result.stderr.splitlines() if "is not on your PATH" not in line] == []
    assert inst.exe.is_file() and inst.entry.is_file() and inst.autostart.is_file()
    assert not (inst.share / "icons" / "hicolor" / "icon-theme.cache").exists()
    assert not (inst.share / "applications" / "mimeinfo.cache").exists()
    inst.ok("--uninstall", PATH=str(tools))
    assert not inst.exe.exists()


# --- uninstall ------------------------------------------------------------------------------------------------


def test_uninstall_removes_everything_it_installed(inst: Install) -> None:
    inst.ok("--autostart")
    user_data = inst.share / "shoal" / "models" / "model.gguf"
    user_data.parent.mkdir()
    user_data.write_text("weights")
    installed = files_under(inst.prefix, inst.tmp / "xdg-config")
    assert len(installed) >= 13  # app (2 files), install.sh, launcher, entry, autostart, 7 icons, user data

    # from the copy kept in the install, as the final message says (the tarball may be gone by then)
    result = inst.ok("--uninstall", script=inst.share / "shoal" / "install.sh")

    assert files_under(inst.prefix, inst.tmp / "xdg-config") == {user_data}
    assert not inst.launcher.is_symlink()
    for path in (inst.launcher, inst.entry, inst.autostart, inst.app):
        assert f"  {path}" in result.stdout, path
    assert "Kept your data" in result.stdout

    again = inst.run("--uninstall")
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout


def test_uninstall_when_never_installed_is_not_an_error(inst: Install) -> None:
    result = inst.run("--uninstall")
    assert result.returncode == 0, result.stderr
    assert "nothing to remove" in result.stdout
    assert not inst.prefix.exists()


def test_a_foreign_shoal_command_is_left_alone(inst: Install) -> None:
    """e.g. `pip install --user shoal` put a script at ~/.local/bin/shoal."""
    inst.launcher.parent.mkdir(parents=True)
    inst.launcher.write_text("#!/bin/sh\necho pip-shoal\n")
    result = inst.ok()
    assert "is not a symlink" in result.stderr
    assert inst.launcher.read_text() == "#!/bin/sh\necho pip-shoal\n"
    inst.ok("--uninstall")
    assert inst.launcher.read_text() == "#!/bin/sh\necho pip-shoal\n"
    assert not inst.exe.exists()


# --- errors ---------------------------------------------------------------------------------------------------


def test_fails_clearly_without_the_bundle_folder(inst: Install, tmp_path: Path) -> None:
    lonely = tmp_path / "just-the-script"
    lonely.mkdir()
    shutil.copy2(INSTALL_SH, lonely / "install.sh")
    result = inst.run(script=lonely / "install.sh")
    assert result.returncode != 0
    assert f"{lonely}/shoal/ is missing" in result.stderr
    assert "unpacked shoal-<version>-linux-<arch>-<flavour> folder" in result.stderr
    assert not inst.prefix.exists()


def test_fails_on_an_unknown_option(inst: Install) -> None:
    result = inst.run("--bogus")
    assert result.returncode != 0
    assert "unknown option: --bogus" in result.stderr
    assert not inst.prefix.exists()


def test_refuses_a_bundle_for_another_cpu(inst: Install) -> None:
    info = '{\n  "platform": "linux-riscv128",\n  "glibc": "glibc 2.36"\n}\n'
    (inst.pkg / "shoal" / "BUILD-INFO.json").write_text(info)
    result = inst.run()
    assert result.returncode != 0
    assert f"built for riscv128 and this computer is {platform.machine()}" in result.stderr
    assert not inst.prefix.exists()


def test_warns_when_the_bundle_needs_a_newer_glibc(inst: Install) -> None:
    info = f'{{\n  "platform": "linux-{platform.machine()}",\n  "glibc": "glibc 99.1"\n}}\n'
    (inst.pkg / "shoal" / "BUILD-INFO.json").write_text(info)
    result = inst.ok()
    assert "built with glibc 99.1" in result.stderr
    assert inst.exe.is_file()
    (inst.pkg / "shoal" / "BUILD-INFO.json").write_text(info.replace("99.1", "2.0"))
    assert "built with glibc" not in inst.ok().stderr
