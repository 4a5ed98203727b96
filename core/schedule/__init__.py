"""Scheduled prompts: recurring (cron, intervals) and one-off, persisted in the timeline database.

`ScheduleStore` (store.py) is the CRUD over the `schedule_jobs` and `schedule_runs` tables; it works without
anything running, so `shoal schedule add` can change jobs while the desktop app runs them in another process.
`Scheduler` (runner.py) adds the runner: it sleeps until the next job is due, runs it through the agent core,
and records each run as a row and a `schedule.run` timeline event. spec.py parses the three kinds of schedule
and computes their times in the local time zone; rules.py decides what to do about runs missed while Shoal
was not running. The rules are written down for users in docs/schedule.md.
"""

from core.schedule.models import Job, Run
from core.schedule.runner import Scheduler
from core.schedule.spec import ScheduleExpressionError, Spec, parse_spec
from core.schedule.store import JobNotFoundError, ScheduleStore

__all__ = [
    "Job",
    "JobNotFoundError",
    "Run",
    "ScheduleExpressionError",
    "ScheduleStore",
    "Scheduler",
    "Spec",
    "parse_spec",
]
