"""Desktop startup: time from process start to the first window shown, and resident memory then.

Shoal's app (`shoal --startup-probe`: the real main window with every pane, offscreen, before any model
is loaded) beside a bare PySide6 window as the floor, measured alternately, medians of --runs.

Run: .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE = """
import json, os, resource, sys, time
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
window = QMainWindow(); window.resize(1280, 800); window.setWindowTitle("bare"); window.show()
app.processEvents()
print(json.dumps({"first_window_s": time.time() - float(os.environ["SHOAL_PROBE_T0"]),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "heavy_modules": []}))
"""


def measure(command: list[str]) -> dict[str, float]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SHOAL_PROBE_T0": repr(time.time())}
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    shoal_cmd = [sys.executable, "-m", "app", "--startup-probe"]
    bare_cmd = [sys.executable, "-c", BARE]
    measure(shoal_cmd), measure(bare_cmd)  # warm the page cache for both
    runs: dict[str, list[dict[str, float]]] = {"bare PySide6 window": [], "shoal main window": []}
    for _ in range(args.runs):
        runs["bare PySide6 window"].append(measure(bare_cmd))
        runs["shoal main window"].append(measure(shoal_cmd))
    print(f"first window shown, offscreen, medians of {args.runs} runs (warm cache)")
    for name, results in runs.items():
        seconds = statistics.median(r["first_window_s"] for r in results)
        rss = statistics.median(r["rss_mb"] for r in results)
        print(f"  {name:22s} {seconds * 1000:7.0f} ms   {rss:6.0f} MB RSS")
    heavy = runs["shoal main window"][-1]["heavy_modules"]
    print(f"  heavy modules imported by then: {heavy or 'none'}   (targets: < 1000 ms, < 150 MB)")


if __name__ == "__main__":
    main()
