"""Check a built bundle as a user would run it: `make bundle-smoke [FLAVOUR=slim|full]`.

Each check runs the bundled executable in a clean temporary home (its own config, data folder and keyring,
offscreen Qt), and exercises what the app loads lazily, so a module or library PyInstaller missed fails here:

1. the desktop smoke test (`--smoke-test`): the main window, one scripted chat turn through the bundled core,
   a screenshot;
2. first-window time (`--startup-probe`, median of several cold-ish runs) and the bundle's size against its
   target (slim < 250 MB, full < 1 GB, without a chat model);
3. a chat turn over a real GGUF model (generated here) through the bundled llama.cpp;
4. memory: remember a note and find it by a paraphrase (the embedding model runs in a child process that
   the frozen executable spawns: GGUF on llama.cpp in the slim flavour, sentence-transformers in the full one);
5. `shoal doctor` sees the embedding model.
Exits non-zero with the failing check's output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_BYTES = {"slim": 250_000_000, "full": 1_000_000_000}
FIRST_WINDOW_TARGET_S = 1.5
REPLY = "Hello from the bundle."


class Failed(Exception):
    pass


def run(exe: Path, home: Path, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        SHOAL_CONFIG=str(home / "config.toml"),
        SHOAL_PATHS__DATA_DIR=str(home / "data"),
        SHOAL_TOOLS__WORKSPACE=str(home / "ws"),
        HOME=str(home),
        QT_QPA_PLATFORM="offscreen",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        HF_HUB_OFFLINE="1",
        NO_COLOR="1",
    )
    env.update(extra)
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=home)


def check(ok: bool, what: str, result: subprocess.CompletedProcess[str] | None = None) -> None:
    if not ok:
        detail = f"\n--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}" if result else ""
        raise Failed(f"{what}{detail}")
    print(f"  ok  {what}")


def smoke_window(exe: Path, home: Path) -> None:
    shot = home / "smoke.png"
    result = run(exe, home, "--smoke-test", str(shot))
    check(result.returncode == 0 and "smoke test passed" in result.stderr, "desktop smoke test", result)
    check(shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, f"screenshot {shot}")


def first_window(exe: Path, home: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        result = run(exe, home, "--startup-probe", SHOAL_PROBE_T0=str(time.time()))  # from the process's start
        check(result.returncode == 0, "startup probe", result) if result.returncode else None
        probe = json.loads(result.stdout.strip().splitlines()[-1])
        times.append(float(probe["first_window_s"]))
    median = statistics.median(times)
    print(f"      first window: median {median:.2f} s of {runs} runs ({', '.join(f'{t:.2f}' for t in times)})")
    check(median < FIRST_WINDOW_TARGET_S, f"first window under {FIRST_WINDOW_TARGET_S} s ({median:.2f} s)")
    return median


def chat_over_gguf(exe: Path, home: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.gguf_models import write_scripted_model

    model = write_scripted_model(home / "plain.gguf", REPLY)
    result = run(exe, home, "--model", str(model), "agent", "-m", "hi")
    check(
        result.returncode == 0 and result.stdout.strip() == REPLY, "a chat turn over a GGUF model (llama.cpp)", result
    )


def memory_roundtrip(exe: Path, home: Path) -> None:
    saved = run(exe, home, "memory", "remember", "The spare key is under the blue flowerpot by the door.")
    check(saved.returncode == 0 and "Remembered" in saved.stdout, "memory: remember (embedding process)", saved)
    found = run(exe, home, "memory", "search", "where is the house key hidden", "--json")
    hits = json.loads(found.stdout) if found.returncode == 0 else []
    ok = bool(hits) and "flowerpot" in hits[0]["text"] and (hits[0]["similarity"] or 0) > 0.3
    check(ok, "memory: a paraphrase finds the note by meaning", found)
    doctor = run(exe, home, "doctor")
    check("✓ memory: embedding model" in doctor.stdout + doctor.stderr, "doctor sees the embedding model", doctor)


def headless_serve(exe: Path, home: Path) -> None:
    """`shoal serve` from the bundle: the token from the environment (no keyring here, as on a server)."""
    import urllib.request

    token = "bundle-smoke-token-0123456789abcdef"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        SHOAL_CONFIG=str(home / "config.toml"),
        SHOAL_PATHS__DATA_DIR=str(home / "data"),
        SHOAL_TOOLS__WORKSPACE=str(home / "ws"),
        HOME=str(home),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        SHOAL_SERVE_TOKEN=token,
    )
    process = subprocess.Popen([str(exe), "serve", "--port", "0"], env=env, cwd=home, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        check(line.startswith("Shoal is serving on http://127.0.0.1:"), f"shoal serve starts: {line.strip()}")
        url = line.split(" on ", 1)[1].split()[0]
        request = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            models = json.loads(answer.read())
        check(models["data"][0]["id"] == "shoal", "shoal serve answers /v1/models with the token")
        process.terminate()
        check(process.wait(30) == 0, "shoal serve stops cleanly on SIGTERM")
    finally:
        if process.poll() is None:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=["slim", "full"], default=os.environ.get("FLAVOUR", "slim"))
    parser.add_argument("--runs", type=int, default=5, help="startup probes")
    args = parser.parse_args()
    bundle = ROOT / "dist" / args.flavour / "shoal"
    exe = bundle / "shoal"
    if not exe.is_file():
        raise SystemExit(f"No bundle at {bundle}: run `make bundle FLAVOUR={args.flavour}` first")
    info = json.loads((bundle / "BUILD-INFO.json").read_text())
    print(f"bundle {bundle} ({info['flavour']}, {info['size_bytes'] / 1e6:.0f} MB, built on {info['glibc']})")
    print(f"      llama.cpp: {info['llama_cpp_system_info']}")
    try:
        limit = TARGET_BYTES[args.flavour]
        check(info["size_bytes"] < limit, f"size {info['size_bytes'] / 1e6:.0f} MB under {limit / 1e6:.0f} MB")
        with tempfile.TemporaryDirectory(prefix="shoal-bundle-smoke-") as tmp:
            home = Path(tmp)
            started = time.monotonic()
            smoke_window(exe, home)
            first_window(exe, home, args.runs)
            chat_over_gguf(exe, home)
            memory_roundtrip(exe, home)
            headless_serve(exe, home)
            print(f"bundle smoke test passed in {time.monotonic() - started:.0f} s")
    except Failed as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
