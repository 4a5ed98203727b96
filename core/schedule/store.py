"""Scheduled jobs in the timeline database (table `schedule_jobs`, migration m007_schedule): add, change, find.

Every query runs on the database's one worker thread (`Database.read` / `Database.write`), like the rest of
the core. The store needs nothing else running, so `shoal schedule add` works while the desktop app, in another
process, runs the schedule: SQLite (WAL) serialises the writers, and the runner re-reads the table at least
every 30 seconds. A job's runs are kept by `RunLedger` (ledger.py), which this store extends.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from typing import Any

from core.errors import UserError
from core.schedule.clock import from_iso, to_iso
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


def _check_claim(key: str | None) -> str | None:
    """A job's group work key (docs/coordination.md): trimmed, at most 200 characters; empty means none."""
    key = " ".join((key or "").split())
    if len(key) > 200:
        raise UserError(f"The group claim key is {len(key)} characters; the limit is 200.", "Use a short name.")
    return key or None


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
        group_claim: str | None = None,
    ) -> Job:
        """A new enabled job with its own thread (session), due at its first time after now. `group_claim`: run
        each scheduled time once across the group (core/schedule/group_claim.py)."""
        prompt = _check_prompt(prompt)
        claim = _check_claim(group_claim)
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
                "created_at, updated_at, next_run, group_claim) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                (job_id, name, prompt, spec.kind, spec.expr, catch_up, int(notify), session_id, stamp, stamp,
                 to_iso(next_run) if next_run else None, claim),
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
        group_claim: str | None = _UNSET,
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
        if group_claim is not _UNSET:
            changes["group_claim"] = _check_claim(group_claim)
        if (cron, every, at) != (None, None, None):
            spec = self.parse(cron=cron, every=every, at=at)
            changes.update(kind=spec.kind, expr=spec.expr)
            # A one-off switches itself off when its time is claimed, before its run starts (or ends): any trace
            # of a run, even one still queued or going, means it is done rather than switched off by hand.
            done = job.kind == "once" and not job.enabled and (job.last_status or job.last_run or await self._ran(job))
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
        """By id, the name (any case), a unique id prefix (4+ characters), or a unique start of the name. A name
        is looked at before id prefixes (`remove feed` must not delete a job whose id starts with "feed"), and
        when a name and another job's id prefix both match, nothing is guessed."""
        ref = ref.strip()
        if not ref:
            raise JobNotFoundError("Which job? No id was given.", "`shoal schedule list` shows the ids.")

        def query(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
            exact = conn.execute("SELECT * FROM schedule_jobs WHERE id = ?", (ref,)).fetchall()
            if exact:
                return exact, []
            named = conn.execute("SELECT * FROM schedule_jobs WHERE lower(name) = lower(?) LIMIT 5", (ref,)).fetchall()
            prefixed = (
                conn.execute(
                    "SELECT * FROM schedule_jobs WHERE id LIKE ? ESCAPE '\\' LIMIT 5", (f"{_like(ref.lower())}%",)
                ).fetchall()
                if len(ref) >= 4
                else []
            )
            if named or prefixed:
                return named, prefixed
            return conn.execute(  # the start of a name, if only one job's name starts so
                "SELECT * FROM schedule_jobs WHERE lower(name) LIKE ? ESCAPE '\\' LIMIT 5", (f"{_like(ref.lower())}%",)
            ).fetchall(), []

        rows, by_id = await self.db.read(query)
        others = [r for r in by_id if r["id"] not in {n["id"] for n in rows}]
        if rows and others:
            both = ", ".join(f"{r['id'][:8]} {r['name']!r}" for r in [*rows[:1], *others[:2]])
            raise JobNotFoundError(
                f"{ref!r} is the name of one job and the start of another's id ({both}).",
                "Give the full id (`shoal schedule list --json` shows it) or more of the id.",
            )
        rows = rows or by_id
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

    async def existing(self, job_ids: list[str]) -> set[str]:
        """Which of these jobs still exist (the runner cancels a run whose job another process deleted)."""

        def query(conn: sqlite3.Connection) -> set[str]:
            marks = ",".join("?" * len(job_ids))
            return {r[0] for r in conn.execute(f"SELECT id FROM schedule_jobs WHERE id IN ({marks})", job_ids)}

        return await self.db.read(query) if job_ids else set()

    async def realign(self) -> list[Job]:
        """After the time zone changed (or at start, in case it changed while Shoal was closed): the next run of
        each enabled cron job, recomputed in the current zone where it differs. A future one becomes the first
        time after now; a past one (due, about to be handled by the missed-run rule) becomes the schedule's first
        time in the new zone from (about) the old one on, so its missed times are counted in the new zone too.
        Where the zone did not change, nothing differs and nothing is written. Compare-and-swap on `next_run`:
        a claim or an edit meanwhile wins. Intervals are elapsed time and one-offs a fixed instant (stored with
        their offset): the zone does not move them."""
        now, zone = self.now(), self.zone()

        def query(conn: sqlite3.Connection) -> list[Job]:
            sql = "SELECT * FROM schedule_jobs WHERE enabled = 1 AND kind = 'cron' AND next_run IS NOT NULL"
            return [Job.from_row(r) for r in conn.execute(sql)]

        moves: list[tuple[str, str, str]] = []
        for job in await self.db.read(query):
            try:
                old = from_iso(job.next_run or "")
                if old > now:
                    nxt = job.spec.next_after(now, zone)
                elif job.spec.last_at_or_before(old, zone) == old:
                    continue  # a time of this schedule in this zone: nothing to move
                else:
                    nxt = job.spec.next_after(old - timedelta(seconds=1), zone)
            except Exception:  # a damaged row: the runner reports it when the job is due
                continue
            if nxt is not None and nxt != old:
                moves.append((to_iso(nxt), job.id, job.next_run or ""))
        if not moves:
            return []

        def write(conn: sqlite3.Connection) -> list[Job]:
            moved = []
            for next_run, job_id, before in moves:
                cursor = conn.execute(
                    "UPDATE schedule_jobs SET next_run = ?, updated_at = ? WHERE id = ? AND enabled = 1 "
                    "AND next_run = ?",
                    (next_run, now_iso(), job_id, before),
                )
                if cursor.rowcount:
                    moved.append(self._job(conn, job_id))
            return moved

        return await self.db.write(write)

    async def _ran(self, job: Job) -> bool:
        def query(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT 1 FROM schedule_runs WHERE job_id = ? LIMIT 1", (job.id,)).fetchone()
            return row is not None

        return await self.db.read(query)

    @staticmethod
    def _job(conn: sqlite3.Connection, job_id: str) -> Job:
        return Job.from_row(conn.execute("SELECT * FROM schedule_jobs WHERE id = ?", (job_id,)).fetchone())
