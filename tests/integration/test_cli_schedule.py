"""`shoal schedule run` over a real generated GGUF model: the answer streams like `shoal agent`, the run is
recorded, and its turn is in the job's thread in the timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import PLAIN_REPLY

ROOT = Path(__file__).resolve().parents[2]


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "SHOAL_MODEL__TEMPERATURE": "0"},
        timeout=180,
    )


def test_schedule_run_streams_the_answer_and_records_the_run(plain_model: Path) -> None:
    job = json.loads(shoal("schedule", "add", "what is the tide doing?", "--cron", "0 8 * * *", "--json").stdout)
    ran = shoal("--model", str(plain_model), "schedule", "run", job["short_id"])
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == PLAIN_REPLY + "\n"
    assert f"of {job['name']}: ok" in ran.stderr
    [run] = json.loads(shoal("schedule", "history", job["id"], "--json").stdout)
    assert (run["status"], run["trigger"], run["summary"]) == ("ok", "manual", PLAIN_REPLY)
    assert run["duration_s"] is not None and run["duration_s"] > 0
    tree = shoal("timeline", "-s", job["session_id"], "--json")
    [root] = json.loads(tree.stdout.strip().splitlines()[-1])
    assert root["payload"]["text"] == "what is the tide doing?" and root["trace_id"] == run["trace_id"]
    assert "schedule.run" in [child["kind"] for child in root["children"]]
    shown = json.loads(shoal("schedule", "show", job["id"], "--json").stdout)
    assert shown["job"]["last_status"] == "ok" and shown["job"]["next_run"] == job["next_run"]
