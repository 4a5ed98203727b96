"""How jobs and runs read in the Schedule pane: one wording for the lists, the detail and the notifications.

Pure functions over `core.schedule.Job` / `Run` (no Qt), so tests and every widget agree on the text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.schedule import Job, Run
from core.schedule.words import relative, when

STATUS_COLORS = {
    "ok": "#2e9d3a",
    "failed": "#dc2626",
    "cancelled": "#8a8a8a",
    "skipped": "#d97706",
    "missed": "#d97706",
    "running": "#0284c7",
    "queued": "#0284c7",
}
STATUS_SYMBOLS = {"ok": "✓", "failed": "✗", "cancelled": "■", "skipped": "↷", "missed": "↷", "running": "●",
                  "queued": "…"}  # fmt: skip
TRIGGERS = {"schedule": "on time", "catch_up": "catch-up", "manual": "run now"}
CATCH_UP_CHOICES = (
    ("As in Settings", None),
    ("Run once when Shoal is back", "once"),
    ("Skip missed runs", "skip"),
)
PRESETS = (
    ("Every weekday at 08:00", "0 8 * * 1-5"),
    ("Every day at 08:00", "0 8 * * *"),
    ("Every Monday at 09:00", "0 9 * * 1"),
    ("Every hour, on the hour", "0 * * * *"),
    ("Every 15 minutes", "*/15 * * * *"),
    ("On the 1st of the month at 09:00", "0 9 1 * *"),
    ("Every weekday at 17:30", "30 17 * * 1-5"),
)


def now() -> datetime:
    return datetime.now(UTC)


def next_run_text(job: Job, at: datetime | None = None) -> str:
    """ "today 08:00 (in 3 h)", "off", "done" (a one-off that ran)."""
    if not job.enabled:
        return "done" if job.kind == "once" and job.last_run else "off"
    if job.next_run is None:
        return "—"
    moment = at or now()
    return f"{when(job.next_run, now=moment)} ({relative(job.next_run, moment)})"


def status_text(status: str | None) -> str:
    if not status:
        return "never run"
    return f"{STATUS_SYMBOLS.get(status, '')} {status}".strip()


def last_run_text(job: Job, at: datetime | None = None) -> str:
    if not job.last_status:
        return "never run"
    moment = when(job.last_run, now=at or now()) if job.last_run else ""
    return f"{status_text(job.last_status)} {moment}".strip()


def run_time(run: Run, at: datetime | None = None) -> str:
    """When it ran (or, for a missed or skipped run, when that was recorded): the list is in that order."""
    return when(run.started_at or run.created_at, now=at or now())


def scheduled_text(run: Run, at: datetime | None = None) -> str:
    """ "Scheduled for today 08:00" (the time it was due; a manual run has none)."""
    if not run.scheduled_for:
        return "Started by hand (Run now)."
    first = "First missed time" if run.status == "missed" else "Scheduled for"
    return f"{first}: {when(run.scheduled_for, now=at or now())}."


def run_status(run: Run) -> str:
    text = status_text(run.status)
    return f"{text} ×{run.count}" if run.count > 1 else text


def run_trigger(run: Run) -> str:
    """ "on time", "catch-up", "run now"; nothing for missed times (they did not run)."""
    return "—" if run.status == "missed" else TRIGGERS.get(run.trigger, run.trigger)


def run_took(run: Run) -> str:
    seconds = run.duration_s
    if seconds is None:
        return ""
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def run_result(run: Run) -> str:
    """One line: the answer, or for the others why (the error's first line for a failure)."""
    text = (run.error or run.summary) if run.status == "failed" else (run.summary or run.error or "")
    if run.status in ("running", "queued") and not text:
        text = "running…" if run.status == "running" else "waiting for a free slot"
    return " ".join(text.split())


def notification(job: Job, run: Run) -> tuple[str, str]:
    """Title and text of the desktop notification when a run ends."""
    if run.status == "ok":
        body = " ".join(run.summary.split()) or "Finished with an empty answer."
        return job.name, body[:240] + ("…" if len(body) > 240 else "")
    if run.status == "failed":
        first = (run.error or "The run failed.").split("\n")[0]
        return f"{job.name} failed", first
    return f"{job.name}: {run.status}", run_result(run)[:240]
