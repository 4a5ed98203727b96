"""The desktop app as a person starts it: a real process, a real window (offscreen or under Xvfb)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
HEAVY = {"torch", "sentence_transformers", "llama_cpp", "aiokafka", "mcp"}


def shoal(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def test_the_first_window_appears_without_importing_heavy_libraries() -> None:
    result = shoal("--startup-probe")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["first_window_s"] > 0 and probe["rss_mb"] > 0
    assert HEAVY.isdisjoint(probe["heavy_modules"]), probe


def test_smoke_test_runs_a_turn_and_writes_a_screenshot(tmp_path: Path) -> None:
    out = tmp_path / "smoke.png"
    result = shoal("--smoke-test", str(out))
    assert result.returncode == 0, result.stderr
    assert "smoke test passed" in result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_screenshots_of_the_real_windows_under_xvfb() -> None:
    """A real X server (Xvfb), not the offscreen plugin: what a person would see. PNGs land in build/screenshots."""
    if shutil.which("xvfb-run") is None:
        pytest.fail("xvfb-run is missing: run `bash packaging/system-deps.sh` (or `sudo apt-get install xvfb`)")
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    command = [sys.executable, "-m", "app", "--smoke-test", str(SHOTS / "main_window.png"), "--screenshots", str(SHOTS)]
    result = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("main_window.png", "quick_ask.png", "settings.png"):
        assert (SHOTS / name).stat().st_size > 5_000, name


def test_quick_ask_forwards_to_the_running_instance(tmp_path: Path) -> None:
    env = {**os.environ, "SHOAL_PATHS__DATA_DIR": str(tmp_path / "data")}
    primary = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = tmp_path / "data" / "logs" / "shoal.log"
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "desktop ready" in log.read_text()):  # the primary owns the instance now
            assert primary.poll() is None and time.monotonic() < deadline, primary.stderr and primary.stderr.read()
            time.sleep(0.2)
        forwarded = subprocess.run(
            [sys.executable, "-m", "app", "--quick-ask"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert forwarded.returncode == 0, forwarded.stderr
        while "request from another shoal process: quick-ask" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert primary.poll() is None  # the second process did not start a second app
        subprocess.run([sys.executable, "-c", _QUIT], cwd=ROOT, env=env, check=True, timeout=30)
        assert primary.wait(timeout=30) == 0
    finally:
        if primary.poll() is None:
            primary.kill()
            primary.wait()


_QUIT = """
from PySide6.QtCore import QCoreApplication
from ui.single_instance import SingleInstance
app = QCoreApplication([])
assert SingleInstance().send({"action": "quit"})
"""
