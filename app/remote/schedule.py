"""The remote agent's scheduled prompts, as much of `core.schedule.Scheduler` as the Schedule pane uses.

Jobs and runs come from the server (/api/schedule…) as the same `Job` and `Run` dataclasses, and every change
is made there: the server runs the jobs, in its own time zone. Checking a schedule as it is typed (`parse`,
`preview`) happens here, with this computer's clock and zone, which is what a person reads the times in.
Pausing is the server's own affair (`shoal serve` has no pause), so `set_paused` does nothing.

The pane learns of changes made elsewhere from the server's timeline feed: every run ends with a
`schedule.run` event, which makes `changed` fire and, once the run and its job are read back,
`on_run_finished` (the tray's notification). A scheduled turn is not streamed into the chat as it runs
(the server keeps no stream of it); its thread shows the answer once it is recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.remote.http import RemoteClient
from core.errors import ShoalError, UserError
from core.schedule import Job, Run, Spec
from core.settings import Settings

log = logging.getLogger(__name__)
RUN_WAIT = 3600.0  # POST …/run waits for the run: as long as a turn may take, not the usual request limit


def _job(data: dict[str, Any]) -> Job:
    names = {f.name for f in dataclasses.fields(Job)}
    return Job(**{k: v for k, v in data.items() if k in names})


def _run(data: dict[str, Any]) -> Run:
    names = {f.name for f in dataclasses.fields(Run)}
    return Run(**{k: v for k, v in data.items() if k in names})


class RemoteSchedule:
    def __init__(self, client: RemoteClient, settings: Callable[[], Settings], status: Callable[[], dict[str, Any]]):
        self._client = client
        self._settings = settings
        self._status = status
        self._changes: list[Callable[[], object]] = []
        self._finished: list[Callable[[Run, Job], object]] = []
        self._events: list[Callable[..., object]] = []

    # --- state and listeners -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._status().get("scheduler"))

    @property
    def paused(self) -> bool:
        return False

    def set_paused(self, _paused: bool) -> None:
        return None

    def should_notify(self, job: Job) -> bool:
        return job.notify and self._settings().schedule.notify

    def on_change(self, callback: Callable[[], object]) -> None:
        self._changes.append(callback)

    def on_run_finished(self, callback: Callable[[Run, Job], object]) -> None:
        self._finished.append(callback)

    def on_run_event(self, callback: Callable[..., object]) -> None:
        self._events.append(callback)  # never called: the server does not stream scheduled turns

    def remove_listener(self, callback: Callable[..., object]) -> None:
        for listeners in (self._changes, self._finished, self._events):
            if callback in listeners:
                listeners.remove(callback)

    def changed(self) -> None:
        for callback in list(self._changes):
            callback()

    async def run_recorded(self, payload: dict[str, Any]) -> None:
        """A `schedule.run` event arrived: say the lists changed, and report the finished run with its job."""
        self.changed()
        job_id, run_id = str(payload.get("job_id") or ""), str(payload.get("run_id") or "")
        if not job_id or not run_id or payload.get("status") in ("queued", "running"):
            return
        try:
            detail = await self._client.get(f"/api/schedule/{job_id}")
        except ShoalError as exc:  # removed meanwhile
            log.info("could not read scheduled job %s: %s", job_id, exc.message)
            return
        run = next((_run(r) for r in detail.get("runs") or [] if r.get("id") == run_id), None)
        if run is not None:
            job = _job(detail)
            for callback in list(self._finished):
                callback(run, job)

    # --- checking a schedule as it is typed -------------------------------------------------------

    def parse(self, *, cron: str | None = None, every: str | None = None, at: str | None = None) -> Spec:
        from core.schedule.clock import local_zone, system_clock
        from core.schedule.spec import parse_spec

        return parse_spec(cron=cron, every=every, at=at, zone=local_zone(), now=system_clock())

    def preview(
        self, *, cron: str | None = None, every: str | None = None, at: str | None = None, count: int = 3
    ) -> list[datetime]:
        from core.schedule.clock import local_zone, system_clock

        return list(self.parse(cron=cron, every=every, at=at).upcoming(system_clock(), local_zone(), count))

    # --- jobs and runs on the server ---------------------------------------------------------------

    async def list_jobs(self) -> list[Job]:
        return [_job(row) for row in await self._client.get("/api/schedule")]

    async def get_job(self, job_id: str) -> Job:
        return _job(await self._client.get(f"/api/schedule/{job_id}"))

    async def runs(self, job_id: str | None = None, limit: int = 50) -> list[Run]:
        if job_id:
            detail = await self._client.get(f"/api/schedule/{job_id}")
            return [_run(r) for r in detail.get("runs") or []][:limit]
        return [_run(r) for r in await self._client.get("/api/schedule/runs", limit=max(1, min(limit, 1000)))]

    async def add_job(self, prompt: str, **fields: Any) -> Job:
        body = {"prompt": prompt, **{k: v for k, v in fields.items() if v is not None}}
        job = _job(await self._client.request("POST", "/api/schedule", json_body=body))
        self.changed()
        return job

    async def update_job(self, job_id: str, **changes: Any) -> Job:
        job = _job(await self._client.request("PATCH", f"/api/schedule/{job_id}", json_body=changes))
        self.changed()
        return job

    async def remove_job(self, job_id: str) -> Job:
        job = await self.get_job(job_id)
        await self._client.request("DELETE", f"/api/schedule/{job.id}")
        self.changed()
        return job

    async def set_enabled(self, job_id: str, enabled: bool) -> Job:
        job = _job(await self._client.request("PUT", f"/api/schedule/{job_id}", json_body={"enabled": enabled}))
        self.changed()
        return job

    async def run_now(self, job_id: str, **_ignored: Any) -> Run:
        if not job_id:
            raise UserError("Which job?", "Select one in the list.")
        self.changed()
        return _run(await self._client.request("POST", f"/api/schedule/{job_id}/run", timeout=RUN_WAIT))
