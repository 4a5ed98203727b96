"""`shoal schedule …` as a user types it (a real process, real SQLite, no model): add with each kind of
schedule, list, show, disable and enable, remove, history, and the errors with their exit codes."""

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
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160", "TZ": "Europe/Berlin"},
        timeout=120,
    )


def test_add_list_show_disable_enable_remove() -> None:
    added = shoal("schedule", "add", "summarise my unread notes", "--cron", "0 8 * * 1-5", "--name", "Morning notes")
    assert added.returncode == 0, added.stderr
    assert "Morning notes: every weekday at 08:00" in added.stdout and "next run" in added.stdout
    assert "then" in added.stdout, "the next times are shown so the schedule can be checked"
    assert "desktop app" in added.stderr
    tide = shoal("schedule", "add", "check the tide", "--every", "2h", "--catch-up", "skip", "--no-notify", "--json")
    assert tide.returncode == 0, tide.stderr
    tide_job = json.loads(tide.stdout)
    assert (tide_job["kind"], tide_job["expr"], tide_job["catch_up"], tide_job["notify"]) == ("interval", "2h", "skip",
                                                                                             False)  # fmt: skip
    once = shoal("schedule", "add", "book the dentist", "--at", "2099-12-01 08:00")
    assert once.returncode == 0 and "once, Tue 1 Dec 2099 at 08:00" in once.stdout, once.stdout

    listed = shoal("schedule", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "schedule", "next", "run", "last"]
    assert "every weekday at 08:00" in listed.stdout and "every 2 hours" in listed.stdout
    assert listed.stdout.count("never run") == 3
    jobs = json.loads(shoal("schedule", "list", "--json").stdout)
    assert [j["name"] for j in jobs] == ["Morning notes", "check the tide", "book the dentist"]
    assert jobs[0]["schedule"] == "every weekday at 08:00" and jobs[0]["next_run"].endswith(":00:00.000000Z")

    prefix = jobs[0]["id"][:6]
    shown = shoal("schedule", "show", prefix)
    assert shown.returncode == 0, shown.stderr
    assert "every weekday at 08:00  (cron 0 8 * * 1-5)" in shown.stdout and "summarise my unread notes" in shown.stdout
    assert jobs[0]["session_id"] in shown.stdout and "No runs yet" in shown.stdout

    disabled = shoal("schedule", "disable", "morning")  # the start of a name works too
    assert disabled.returncode == 0 and "Disabled" in disabled.stdout
    assert json.loads(shoal("schedule", "show", prefix, "--json").stdout)["job"]["next_run"] is None
    enabled = shoal("schedule", "enable", prefix)
    assert enabled.returncode == 0 and "next run" in enabled.stdout
    assert json.loads(shoal("schedule", "show", prefix, "--json").stdout)["job"]["enabled"] is True

    removed = shoal("schedule", "remove", tide_job["short_id"])
    assert removed.returncode == 0 and "Removed" in removed.stdout
    assert [j["name"] for j in json.loads(shoal("schedule", "list", "--json").stdout)] == [
        "Morning notes",
        "book the dentist",
    ]
    sessions = shoal("sessions")
    assert "Scheduled · check the tide" in sessions.stdout, "the removed job's thread stays"


def test_errors_say_what_to_fix_with_the_users_exit_code() -> None:
    bad_field = shoal("schedule", "add", "x", "--cron", "0 8 * * 1-9")
    assert bad_field.returncode == 2
    assert "day-of-week field '1-9'" in bad_field.stderr and "0-6" in bad_field.stderr
    both = shoal("schedule", "add", "x", "--every", "1h", "--at", "08:00")
    assert both.returncode == 2 and "only one" in both.stderr
    neither = shoal("schedule", "add", "x")
    assert neither.returncode == 2 and "exactly one" in neither.stderr
    past = shoal("schedule", "add", "x", "--at", "2001-01-01 08:00")
    assert past.returncode == 2 and "is in the past" in past.stderr
    short = shoal("schedule", "add", "x", "--every", "10s")
    assert short.returncode == 2 and "shortest interval is 1 minute" in short.stderr
    missing = shoal("schedule", "show", "nothing")
    assert missing.returncode == 2 and "No scheduled job matches 'nothing'" in missing.stderr
    assert shoal("schedule", "list").stdout.startswith("No scheduled jobs.")


def test_run_without_a_model_records_the_failure_and_history_shows_it() -> None:
    added = json.loads(shoal("schedule", "add", "hello", "--every", "1h", "--name", "ping", "--json").stdout)
    ran = shoal("schedule", "run", "ping")
    assert ran.returncode == 3, ran.stderr  # configuration: no model
    assert "No model is configured" in ran.stderr and "run " in ran.stderr and "failed" in ran.stderr
    history = shoal("schedule", "history", "--json")
    [run] = json.loads(history.stdout)
    assert (run["job_id"], run["status"], run["trigger"]) == (added["id"], "failed", "manual")
    pretty = shoal("schedule", "history")
    assert "ping" in pretty.stdout and "manual" in pretty.stdout and "failed" in pretty.stdout
    own = shoal("schedule", "history", "ping")
    assert "manual" in own.stdout and "ping" not in own.stdout.splitlines()[0]


def test_croniter_is_imported_only_when_a_cron_time_is_computed() -> None:
    code = (
        "import sys, app.cli, app.cli_schedule, core.service, core.schedule; "
        "from core.schedule.words import describe; from core.schedule.spec import Spec; "
        "describe(Spec('cron', '0 8 * * 1-5')); before = 'croniter' in sys.modules; "
        "from datetime import UTC, datetime; from core.schedule.spec import parse_cron; "
        "parse_cron('0 8 * * *', now=datetime.now(UTC)); print(before, 'croniter' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.split() == ["False", "True"]
