"""The run rows of scheduled jobs (table `schedule_runs`): claiming a due time, starting, ending, recovering.

Claiming a due time is a compare-and-swap on the job's `next_run` inside one transaction, so two runners on one
database (the desktop app and `shoal serve`) never both run the same time; the same transaction looks for an
active run of the job, in any process, and records a `skipped` run instead, so a job never overlaps itself.
`missed` and `skipped` rows get their `schedule.run` timeline event in that transaction too. A job keeps its
newest `KEEP_RUNS` ended runs; older rows are pruned whenever one is added or ends. Every query runs on the
database's worker thread, like the rest of the core. `ScheduleStore` (store.py) adds the jobs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.errors import UserError
from core.schedule import owners
from core.schedule.clock import Clock, ZoneGetter, from_iso, local_zone, system_clock, to_iso
from core.schedule.models import SUMMARY_CHARS, Job, JobNotFoundError, Run
from core.schedule.rules import Decision
from core.timeline.db import Database
from core.timeline.ids import TraceContext, new_id, now_iso
from core.timeline.store import Event, Timeline

KEEP_RUNS = 500  # runs kept per job (the newest); older ones are deleted when a run ends
_RUN_SELECT = "SELECT r.*, j.name AS job_name FROM schedule_runs r LEFT JOIN schedule_jobs j ON j.id = r.job_id "


@dataclass
class Claim:
    """What claiming a due time did: the run to start (if any), and the rows and events recorded meanwhile."""

    run: Run | None = None
    recorded: list[Run] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def schedule_event(
    job: Job | dict[str, Any], run_id: str, status: str, payload: dict[str, Any], trace: TraceContext | None = None
) -> Event:
    """The `schedule.run` timeline event of a run that did not (or did) reach the model."""
    get = job.get if isinstance(job, dict) else lambda key: getattr(job, key)
    return Event.new(
        "schedule.run",
        session_id=str(get("session_id")),
        trace=trace or TraceContext.new_root(),
        correlation_id=run_id,
        name=str(get("name")),
        status=status,
        payload={"job_id": get("id"), "run_id": run_id, "status": status, **payload},
    )


class RunLedger:
    """Runs of scheduled jobs; the base of `ScheduleStore`, which adds the jobs themselves."""

    def __init__(self, db: Database, *, clock: Clock = system_clock, zone: ZoneGetter = local_zone) -> None:
        self.db = db
        self.clock = clock
        self.zone = zone

    def now(self) -> datetime:
        return self.clock()

    async def runs(self, job_id: str | None = None, limit: int = 50) -> list[Run]:
        """Newest first; all jobs' runs when `job_id` is None."""
        where, params = ("WHERE r.job_id = ? ", (job_id,)) if job_id else ("", ())

        def query(conn: sqlite3.Connection) -> list[Run]:
            sql = _RUN_SELECT + where + "ORDER BY r.rowid DESC LIMIT ?"
            return [Run.from_row(r) for r in conn.execute(sql, (*params, limit))]

        return await self.db.read(query)

    async def get_run(self, run_id: str) -> Run:
        def query(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row = conn.execute(_RUN_SELECT + "WHERE r.id = ?", (run_id,)).fetchone()
            return row if row is not None else None

        row = await self.db.read(query)
        if row is None:
            raise UserError(f"No run has the id {run_id!r}.", "`shoal schedule history` lists the runs.")
        return Run.from_row(row)

    # --- what the runner needs ---------------------------------------------------------------------

    async def due(self, now: datetime) -> list[Job]:
        stamp = to_iso(now)

        def query(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                "SELECT * FROM schedule_jobs WHERE enabled = 1 AND next_run IS NOT NULL AND next_run <= ? "
                "ORDER BY next_run, rowid",
                (stamp,),
            )
            return [Job.from_row(r) for r in rows]

        return await self.db.read(query)

    async def next_due(self) -> datetime | None:
        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT min(next_run) FROM schedule_jobs WHERE enabled = 1").fetchone()
            return row[0] if row else None

        found = await self.db.read(query)
        return from_iso(found) if found else None

    async def fingerprint(self) -> tuple[Any, ...]:
        """Changes when any job or run changes, in any process (the desktop refreshes on it)."""

        def query(conn: sqlite3.Connection) -> tuple[Any, ...]:
            jobs = conn.execute("SELECT count(*), max(updated_at), max(rowid) FROM schedule_jobs").fetchone()
            runs = conn.execute("SELECT count(*), max(rowid) FROM schedule_runs").fetchone()
            return (*jobs, *runs)

        return await self.db.read(query)

    async def claim(self, job: Job, decision: Decision, owner: str) -> Claim | None:
        """Record what `decision` says for `job`'s due time, if nobody else has (None: `next_run` moved)."""
        now = self.now()

        def write(conn: sqlite3.Connection) -> Claim | None:
            row = conn.execute("SELECT * FROM schedule_jobs WHERE id = ?", (job.id,)).fetchone()
            if row is None or not row["enabled"] or row["next_run"] != job.next_run:
                return None
            claim = Claim()
            if decision.missed_count:
                missed = self._insert_run(
                    conn, row, "missed", "schedule", decision.missed_first, now, count=decision.missed_count,
                    summary=decision.reason, final=True,
                )  # fmt: skip
                claim.recorded.append(missed)
            if decision.run_for is not None:
                active = self._active(conn, job.id, now)
                if active is None:
                    claim.run = self._insert_run(conn, row, "queued", decision.trigger, decision.run_for, now, owner)
                else:
                    since = active.started_at or active.created_at
                    reason = f"the previous run (run {active.id[-8:]}, since {since}) was still going"
                    skipped = self._insert_run(
                        conn, row, "skipped", decision.trigger, decision.run_for, now, summary=reason, final=True
                    )
                    claim.recorded.append(skipped)
            done = decision.next_run is None and job.kind == "once"
            last = claim.recorded[-1].status if claim.recorded else row["last_status"]
            conn.execute(
                "UPDATE schedule_jobs SET next_run = ?, enabled = ?, last_status = ?, updated_at = ? WHERE id = ?",
                (to_iso(decision.next_run) if decision.next_run else None, 0 if done else 1, last, now_iso(), job.id),
            )
            claim.events = [self._event(row, run) for run in claim.recorded]
            Timeline.insert_events(conn, claim.events)  # notified by the caller once committed
            return claim

        return await self._holding(owner, write)

    async def _holding(self, owner: str, write: Callable[[sqlite3.Connection], Any]) -> Any:
        """`write`, which may insert a run held by `owner` (held inside the transaction, so no other claim sees
        it unheld); a transaction rolled back lets go of what it held, or the retries of a failing database
        would leave a held run id behind each time."""
        inserted: set[str] = set()

        def tracked(conn: sqlite3.Connection) -> Any:
            before = owners.held(owner)  # on the database thread, where runs are held, one write at a time
            try:
                return write(conn)
            finally:
                inserted.update(owners.held(owner) - before)

        try:
            return await self.db.write(tracked)
        except Exception:
            for run_id in inserted:
                owners.drop(owner, run_id)
            raise

    async def claim_manual(self, job: Job, owner: str) -> Run:
        """A run now, by hand: refused while the job is already running (it never overlaps itself)."""
        now = self.now()

        def write(conn: sqlite3.Connection) -> Run:
            row = conn.execute("SELECT * FROM schedule_jobs WHERE id = ?", (job.id,)).fetchone()
            if row is None:
                raise JobNotFoundError(f"The job {job.name!r} was removed.", "Refresh the list.")
            active = self._active(conn, job.id, now)
            if active is not None:
                raise UserError(
                    f"{job.name!r} is already running (run {active.id[-8:]}).",
                    "Wait for it to finish; `shoal schedule show` shows its runs.",
                )
            return self._insert_run(conn, row, "queued", "manual", None, now, owner)

        result: Run = await self._holding(owner, write)
        return result

    async def mark_running(self, run: Run) -> Run:
        stamp = to_iso(self.now())

        def write(conn: sqlite3.Connection) -> Run:
            conn.execute("UPDATE schedule_runs SET status = 'running', started_at = ? WHERE id = ?", (stamp, run.id))
            conn.execute("UPDATE schedule_jobs SET last_run = ?, updated_at = ? WHERE id = ?",
                         (stamp, now_iso(), run.job_id))  # fmt: skip
            return Run.from_row(conn.execute(_RUN_SELECT + "WHERE r.id = ?", (run.id,)).fetchone())

        return await self.db.write(write)

    def finish(
        self, run: Run, status: str, *, summary: str = "", error: str | None = None, trace_id: str | None = None
    ) -> Callable[[sqlite3.Connection, Event | None], None]:
        """The write that ends a run, to go in the same transaction as its `schedule.run` event."""
        stamp = to_iso(self.now())

        def write(conn: sqlite3.Connection, _event: Event | None) -> None:
            conn.execute(
                "UPDATE schedule_runs SET status = ?, finished_at = ?, summary = ?, error = ?, "
                "trace_id = coalesce(?, trace_id), owner = NULL WHERE id = ?",
                (status, stamp, summary[:SUMMARY_CHARS], error, trace_id, run.id),
            )
            conn.execute("UPDATE schedule_jobs SET last_status = ?, updated_at = ? WHERE id = ?",
                         (status, now_iso(), run.job_id))  # fmt: skip
            _prune(conn, run.job_id)

        return write

    async def finish_bare(
        self, run: Run, status: str, *, summary: str = "", error: str | None = None, trace_id: str | None = None
    ) -> None:
        """The end of a run without its timeline event: the fallback when writing both together failed, so the
        row does not stay `running` (and block its job) because the event could not be written."""
        write = self.finish(run, status, summary=summary, error=error, trace_id=trace_id)
        await self.db.write(lambda conn: write(conn, None))

    async def record_fault(self, job: Job, error: str) -> Claim | None:
        """A job the runner could not start (a damaged row, a failing database): one `failed` run with the error,
        and the job's last status, so the pane shows what is wrong. The caller records each distinct error once,
        not on every retry. None: the job is gone."""
        now = self.now()

        def write(conn: sqlite3.Connection) -> Claim | None:
            row = conn.execute("SELECT * FROM schedule_jobs WHERE id = ?", (job.id,)).fetchone()
            if row is None:
                return None
            run = self._insert_run(
                conn, row, "failed", "schedule", None, now, summary="The scheduler could not start this job.",
                error=error, final=True,
            )  # fmt: skip
            conn.execute("UPDATE schedule_jobs SET last_status = 'failed', updated_at = ? WHERE id = ?",
                         (now_iso(), job.id))  # fmt: skip
            claim = Claim(recorded=[run], events=[self._event(row, run)])
            Timeline.insert_events(conn, claim.events)
            return claim

        return await self.db.write(write)

    async def ensure_session(self, job: Job) -> str:
        """The job's thread; a new one if the person deleted it, so a run always has somewhere to write."""

        def write(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT session_id, name FROM schedule_jobs WHERE id = ?", (job.id,)).fetchone()
            session_id = row["session_id"] if row else job.session_id
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                return str(session_id)
            session_id, stamp = new_id(), now_iso()
            conn.execute(
                "INSERT INTO sessions (id, title, created_at, updated_at, model, system_prompt) VALUES (?,?,?,?,?,?)",
                (session_id, f"Scheduled · {job.name}"[:80], stamp, stamp, "", ""),
            )
            conn.execute("UPDATE schedule_jobs SET session_id = ? WHERE id = ?", (session_id, job.id))
            return session_id

        return await self.db.write(write)

    async def recover(self) -> list[Run]:
        """Runs left queued or running by a process (or scheduler) that is gone: recorded as failed."""
        now = self.now()

        def write(conn: sqlite3.Connection) -> list[Run]:
            rows = conn.execute("SELECT id, job_id FROM schedule_runs WHERE status IN ('queued', 'running')")
            active = [(str(r["id"]), str(r["job_id"])) for r in rows]
            for job_id in {job_id for _, job_id in active}:
                self._active(conn, job_id, now)
            closed = [conn.execute(_RUN_SELECT + "WHERE r.id = ?", (run_id,)).fetchone() for run_id, _ in active]
            return [Run.from_row(r) for r in closed if r is not None and r["status"] == "failed"]

        return await self.db.write(write)

    # --- inside a transaction ----------------------------------------------------------------------

    def _active(self, conn: sqlite3.Connection, job_id: str, now: datetime) -> Run | None:
        """The job's queued or running run, if its owner is still alive; stale ones are closed as failed."""
        rows = conn.execute(
            _RUN_SELECT + "WHERE r.job_id = ? AND r.status IN ('queued', 'running') ORDER BY r.rowid", (job_id,)
        ).fetchall()
        active = None
        for row in rows:
            if owners.is_stale(row["owner"], from_iso(row["created_at"]), now, row["id"]):
                conn.execute(
                    "UPDATE schedule_runs SET status = 'failed', finished_at = ?, owner = NULL, "
                    "error = 'Shoal stopped before this run finished.' WHERE id = ?",
                    (to_iso(now), row["id"]),
                )
                conn.execute("UPDATE schedule_jobs SET last_status = 'failed' WHERE id = ?", (job_id,))
            elif active is None:
                active = Run.from_row(row)
        return active

    def _insert_run(
        self,
        conn: sqlite3.Connection,
        job: sqlite3.Row,
        status: str,
        trigger: str,
        scheduled_for: datetime | None,
        now: datetime,
        owner: str | None = None,
        *,
        count: int = 1,
        summary: str = "",
        error: str | None = None,
        final: bool = False,
    ) -> Run:
        run_id = new_id()
        conn.execute(
            "INSERT INTO schedule_runs (id, job_id, session_id, scheduled_for, started_at, finished_at, status, "
            "trigger, count, summary, error, owner, created_at) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, job["id"], job["session_id"], to_iso(scheduled_for) if scheduled_for else None,
             to_iso(now) if final else None, status, trigger, count, summary, error, owner, now_iso()),
        )  # fmt: skip
        if owner is not None:  # held before the transaction commits: no other claim can see it unheld
            owners.hold(owner, run_id)
        if final:
            _prune(conn, str(job["id"]))
        return Run.from_row(conn.execute(_RUN_SELECT + "WHERE r.id = ?", (run_id,)).fetchone())

    def _event(self, job: sqlite3.Row, run: Run) -> Event:
        payload = {"trigger": run.trigger, "scheduled_for": run.scheduled_for, "count": run.count,
                   "summary": run.summary, "error": run.error}  # fmt: skip
        return schedule_event(dict(job), run.id, run.status, payload)


def _prune(conn: sqlite3.Connection, job_id: str) -> None:
    """Keep the newest `KEEP_RUNS` ended runs of a job: an every-minute job would otherwise add half a million
    rows a year. Active runs are never pruned; the timeline keeps every run's `schedule.run` event."""
    conn.execute(
        "DELETE FROM schedule_runs WHERE job_id = ? AND status NOT IN ('queued', 'running') AND rowid <= "
        "(SELECT rowid FROM schedule_runs WHERE job_id = ? ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
        (job_id, job_id, KEEP_RUNS),
    )
