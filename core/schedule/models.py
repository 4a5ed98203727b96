"""A scheduled job and one of its runs, as the store returns them and every front end shows them.

Plain frozen dataclasses with `to_dict()` (JSON-ready: the CLI's `--json` and the HTTP server print these), so
no caller ever sees a database row. Times are UTC ISO strings, as stored; front ends render them locally.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, fields
from typing import Any

from core.errors import UserError
from core.schedule.clock import from_iso
from core.schedule.spec import Spec, stored_spec

# A run is `queued` (claimed, waiting for a free slot), then `running`, then one of the final states. `skipped`:
# it was due while the job's previous run was still going; `missed`: Shoal was not running at its time.
ACTIVE = ("queued", "running")
FINAL = ("ok", "failed", "cancelled", "skipped", "missed")
TRIGGERS = ("schedule", "catch_up", "manual")
SUMMARY_CHARS = 500


class JobNotFoundError(UserError):
    """No job, or more than one, matches what was given."""


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    prompt: str
    kind: str  # cron | interval | once
    expr: str  # normalised: "0 8 * * 1-5", "30m", "2026-12-01T08:00+01:00"
    catch_up: str | None  # once | skip; None: the setting schedule.catch_up decides
    notify: bool
    enabled: bool
    session_id: str  # the thread every run of this job writes into
    created_at: str
    updated_at: str
    next_run: str | None  # None while disabled, and once a one-off has run
    last_run: str | None
    last_status: str | None
    group_claim: str | None = None  # a group work key: each scheduled time runs once across the group

    @property
    def spec(self) -> Spec:
        return stored_spec(self.kind, self.expr)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def describe(self) -> str:
        from core.schedule.words import describe

        return describe(self.spec)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "short_id": self.short_id, "schedule": self.describe()}

    @classmethod
    def from_row(cls, row: sqlite3.Row | dict[str, Any]) -> Job:
        data = dict(row)
        data["notify"], data["enabled"] = bool(data["notify"]), bool(data["enabled"])
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Run:
    id: str
    job_id: str
    job_name: str
    session_id: str | None
    scheduled_for: str | None  # the time it was due (None for a manual run)
    started_at: str | None
    finished_at: str | None
    status: str  # queued | running | ok | failed | cancelled | skipped | missed
    trigger: str  # schedule | catch_up | manual
    count: int  # how many scheduled times a `missed` row stands for (1 otherwise)
    trace_id: str | None  # the turn's trace in the timeline
    summary: str  # the answer's first 500 characters; for skipped and missed runs, why
    error: str | None  # what went wrong, and what to do, for a failed run
    created_at: str

    @property
    def duration_s(self) -> float | None:
        if not self.started_at or not self.finished_at:
            return None
        return (from_iso(self.finished_at) - from_iso(self.started_at)).total_seconds()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}

    @classmethod
    def from_row(cls, row: sqlite3.Row | dict[str, Any]) -> Run:
        data = dict(row)
        data.setdefault("job_name", "")
        data["job_name"] = data["job_name"] or ""
        return cls(**{f.name: data[f.name] for f in fields(cls)})
