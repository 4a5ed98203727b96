"""Scheduled jobs in the timeline database (table `schedule_jobs`, migration m007_schedule): add, change, find.

Every query runs on the database's one worker thread (`Database.read` / `Database.write`), like the rest of
the core. The store needs nothing else running, so `shoal schedule add` works while the desktop app, in another
process, runs the schedule: SQLite (WAL) serialises the writers, and the runner re-reads the table at least
every 30 seconds. A job's runs are kept by `RunLedger` (ledger.py), which this store extends.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from core.errors import UserError
from core.schedule.clock import to_iso
from core.schedule.ledger import RunLedger
from core.schedule.models import Job, JobNotFoundError
from core.schedule.spec import Spec, parse_spec
from core.timeline.ids import new_id, now_iso

__all__ = ["JobNotFoundError", "ScheduleStore"]

MAX_PROMPT_CHARS = 20_000
NAME_CHARS = 60
_UNSET: Any = object()


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _default_name(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= NAME_CHARS else line[: NAME_CHARS - 1] + "…"


def _check_catch_up(catch_up: str | None) -> None:
    if catch_up not in (None, "once", "skip"):
        raise UserError(f"catch_up must be once or skip, not {catch_up!r}.", "Use once, skip, or leave it unset.")


def _check_prompt(prompt: str) -> str:
    prompt = prompt.strip()
    if not prompt:
        raise UserError("The prompt is empty.", "Write what the agent should do each time the job runs.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserError(
            f"The prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.",
            "Shorten it, or keep the long text in a file the prompt asks the agent to read.",
        )
    return prompt


class ScheduleStore(RunLedger):
    """CRUD for jobs (here) and runs (`RunLedger`); `Scheduler` adds the runner on top."""

    # --- jobs ----------------------------------------------------------------------------------

    def parse(self, *, cron: str | None = None, every: str | None = None, at: str | None = None) -> Spec:
        return parse_spec(cron=cron, every=every, at=at, zone=self.zone(), now=self.now())

    async def add(
        self,
        prompt: str,
        *,
        cron: str | None = None,
        every: str | None = None,
        at: str | None = None,
        name: str = "",
        catch_up: str | None = None,
        notify: bool = True,
    ) -> Job:
        """A new enabled job with its own thread (session), due at its first time after now."""
        prompt = _check_prompt(prompt)
        _check_catch_up(catch_up)
        spec = self.parse(cron=cron, every=every, at=at)
        now = self.now()
        next_run = spec.next_after(now, self.zone())
        name = " ".join(name.split()) or _default_name(prompt)
        job_id, session_id, stamp = uuid.uuid4().hex, new_id(), now_iso()

        def write(conn: sqlite3.Connection) -> Job:
            conn.execute(
                "INSERT INTO sessions (id, title, created_at, updated_at, model, system_prompt) VALUES (?,?,?,?,?,?)",
                (session_id, f"Scheduled · {name}"[:80], stamp, stamp, "", ""),
            )
            conn.execute(
                "INSERT INTO schedule_jobs (id, name, prompt, kind, expr, catch_up, notify, enabled, session_id, "
                "created_at, updated_at, next_run) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                (job_id, name, prompt, spec.kind, spec.expr, catch_up, int(notify), session_id, stamp, stamp,
                 to_iso(next_run) if next_run else None),
            )  # fmt: skip
            return self._job(conn, job_id)

        return await self.db.write(write)

    async def update(
        self,
        ref: str,
        *,
        prompt: str | None = None,
        name: str | None = None,
        cron: str | None = None,
        every: str | None = None,
        at: str | None = None,
        catch_up: str | None = _UNSET,
        notify: bool | None = None,
    ) -> Job:
        """Change a job; a new schedule (one of cron, every, at) also recomputes its next run from now (and
        switches a one-off that already ran back on)."""
        job = await self.get(ref)
        changes: dict[str, Any] = {}
        if prompt is not None:
            changes["prompt"] = _check_prompt(prompt)
        if name is not None:
            changes["name"] = " ".join(name.split()) or _default_name(changes.get("prompt", job.prompt))
        if catch_up is not _UNSET:
            _check_catch_up(catch_up)
            changes["catch_up"] = catch_up
        if notify is not None:
            changes["notify"] = int(notify)
        if (cron, every, at) != (None, None, None):
            spec = self.parse(cron=cron, every=every, at=at)
            changes.update(kind=spec.kind, expr=spec.expr)
            done = job.kind == "once" and not job.enabled and job.last_status is not None
            if job.enabled or done:  # a one-off that already ran, given a new time, is armed again
                nxt = spec.next_after(self.now(), self.zone())
                changes.update(next_run=to_iso(nxt) if nxt else None, enabled=int(nxt is not None))
        if not changes:
            return job
        changes["updated_at"] = now_iso()

        def write(conn: sqlite3.Connection) -> Job:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            conn.execute(f"UPDATE schedule_jobs SET {assignments} WHERE id = ?", (*changes.values(), job.id))
            return self._job(conn, job.id)

        return await self.db.write(write)

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        """Disabling clears the next run; enabling computes it from now (times passed meanwhile are not missed:
        the job was off). A one-off whose time has passed cannot be enabled again."""
        job = await self.get(ref)
        if job.enabled == enabled:
            return job  # switching on what is on would move its next run (and an interval's phase)
        next_run: str | None = None
        if enabled:
            nxt = job.spec.next_after(self.now(), self.zone())
            if nxt is None:
                raise UserError(
                    f"The one-off job {job.name!r} was due {job.describe().removeprefix('once, ')}; that has passed.",
                    "Edit it to give a new time, or use Run now.",
                )
            next_run = to_iso(nxt)

        def write(conn: sqlite3.Connection) -> Job:
            conn.execute(
                "UPDATE schedule_jobs SET enabled = ?, next_run = ?, updated_at = ? WHERE id = ?",
                (int(enabled), next_run, now_iso(), job.id),
            )
            return self._job(conn, job.id)

        return await self.db.write(write)

    async def remove(self, ref: str) -> Job:
        """Delete a job and its runs. Its thread stays (the answers are the user's), as do its timeline events."""
        job = await self.get(ref)
        await self.db.write(lambda conn: conn.execute("DELETE FROM schedule_jobs WHERE id = ?", (job.id,)))
        return job

    async def get(self, ref: str) -> Job:
        """By id, a unique id prefix (4+ characters), the name, or a unique start of the name (any case)."""
        ref = ref.strip()
        if not ref:
            raise JobNotFoundError("Which job? No id was given.", "`shoal schedule list` shows the ids.")

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            exact = conn.execute("SELECT * FROM schedule_jobs WHERE id = ?", (ref,)).fetchall()
            if exact:
                return exact
            if len(ref) >= 4:
                found = conn.execute(
                    "SELECT * FROM schedule_jobs WHERE id LIKE ? ESCAPE '\\' LIMIT 5", (f"{_like(ref.lower())}%",)
                ).fetchall()
                if found:
                    return found
            named = conn.execute("SELECT * FROM schedule_jobs WHERE lower(name) = lower(?) LIMIT 5", (ref,)).fetchall()
            if named:
                return named
            return conn.execute(  # the start of a name, if only one job's name starts so
                "SELECT * FROM schedule_jobs WHERE lower(name) LIKE ? ESCAPE '\\' LIMIT 5", (f"{_like(ref.lower())}%",)
            ).fetchall()

        rows = await self.db.read(query)
        if len(rows) == 1:
            return Job.from_row(rows[0])
        if not rows:
            raise JobNotFoundError(
                f"No scheduled job matches {ref!r}.",
                "Give its id (the first 8 characters are enough) or its name; `shoal schedule list` shows them.",
            )
        names = ", ".join(f"{r['id'][:8]} {r['name']!r}" for r in rows[:3])
        raise JobNotFoundError(f"{ref!r} matches several jobs ({names}).", "Give more of the id or the name.")

    async def list_jobs(self) -> list[Job]:
        def query(conn: sqlite3.Connection) -> list[Job]:
            return [Job.from_row(r) for r in conn.execute("SELECT * FROM schedule_jobs ORDER BY rowid")]

        return await self.db.read(query)

    @staticmethod
    def _job(conn: sqlite3.Connection, job_id: str) -> Job:
        return Job.from_row(conn.execute("SELECT * FROM schedule_jobs WHERE id = ?", (job_id,)).fetchone())
