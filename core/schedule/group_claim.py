"""Scheduled jobs shared by a group: the same job on several machines runs each of its times once.

A job with a group work key (`shoal schedule add … --claim research`, column `schedule_jobs.group_claim`)
claims `schedule:<key>@<scheduled time, UTC>` in the group before its turn starts (core/group/claims.py). The
machine whose claim wins runs the turn; the others record the run as `skipped`, naming the winner, and a
`group.claim` event in the job's thread. A finished run marks the claim `done`, so a machine whose clock or
catch-up fires later does not run that time again while the claim lasts (`CLAIM_TTL` after the run ends); a
failed or cancelled run releases it, so a peer's catch-up may still run it.

What is not claimed: runs started by hand (Run now is a person asking this machine), and any run while group
mode is off (this machine is then on its own). A claim not decided within `CLAIM_WAIT` seconds is still
followed (it may have won, and the peers that read it skip this time): the run waits for the verdict, and
fails with the network error only when the claim cannot count any more (it reached the group too late, after
a broker outage, or its `CLAIM_TTL` ran out), rather than risk running the time on every machine or on none.
A machine whose clock most peers disagree with fails the run with a configuration error instead of claiming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from core.errors import ShoalError

if TYPE_CHECKING:
    from core.schedule.execution import Outcome
    from core.schedule.models import Job, Run

log = logging.getLogger(__name__)
CLAIM_TTL = 3600.0  # seconds a run holds its scheduled time, running, and again once done
CLAIM_WAIT = 15.0  # seconds before a claim not decided yet is logged as late (it is followed on)


def work_key(job: Job, run: Run) -> str:
    return f"schedule:{job.group_claim}@{run.scheduled_for}"


@contextlib.asynccontextmanager
async def claimed(core: Any, job: Job, run: Run, outcome: Outcome) -> AsyncIterator[bool]:
    """Yields whether this machine runs the turn; when not, `outcome` already says why (skipped or failed)."""
    group = getattr(core, "group", None)
    if not job.group_claim or run.scheduled_for is None or run.trigger == "manual" or group is None:
        if job.group_claim and group is None:
            log.info("scheduled job %s has a group claim but group mode is off: running it here", job.name)
        yield True
        return
    claims, key = group.node.claims, work_key(job, run)
    session = outcome.session_id or job.session_id
    try:
        claim = await claims.try_claim(key, CLAIM_TTL, wait=CLAIM_WAIT, session_id=session)
    except ShoalError as exc:
        outcome.status, outcome.error = "failed", exc.describe()
        yield False
        return
    if claim is None:
        who = claims.holder_name(claims.holder(key)) or "a peer"
        outcome.status = "skipped"
        outcome.summary = f"Run by {who} in group {group.node.group_name} (claim {key})."
        yield False
        return
    try:
        yield True
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(claims.release(claim, session_id=session))
        raise
    try:
        if outcome.status == "ok":
            await claims.done(claim, session_id=session)
        else:
            await claims.release(claim, session_id=session)
    except Exception as exc:  # the run happened; its claim simply lapses at its ttl
        log.warning("scheduled job %s: could not end its group claim: %s", job.name, exc)
