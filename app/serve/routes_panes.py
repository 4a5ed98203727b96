"""What the desktop's Memory and Schedule panes need beyond the other routes, for the desktop's remote mode.

The Memory pane lists the newest stored items when nothing is typed, shows an item's whole text, forgets
one, and shows the counts and the embedding model's state; the Schedule pane's job dialog edits a job in
place. Each does what the same pane does locally, through the same core calls.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app.serve.errors import NotFound, documented
from app.serve.routes_agent import State
from app.serve.routes_ops import Ident, _job, _schedule
from app.serve.schemas import CLAIM_DOC
from app.serve.state import ServeState
from core.errors import ConfigError, UserError

router = APIRouter(prefix="/api", responses=documented(400, 401, 429))
SourceId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z_.:-]+$")]
_MEMORY_OFF = documented(503)


class JobPatch(BaseModel):
    """Changes to a job; absent fields stay as they are. At most one of cron, every, at (a new schedule);
    `catch_up: null` hands the choice back to the setting schedule.catch_up."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, min_length=1, max_length=20_000)
    name: str | None = Field(None, max_length=200)
    cron: str | None = Field(None, max_length=200, description="5-field cron expression, the server's local time")
    every: str | None = Field(None, max_length=50, description="interval: 30m, 2h, 1d")
    at: str | None = Field(None, max_length=50, description="one-off time, the server's local time, ISO 8601")
    catch_up: Literal["once", "skip"] | None = None
    notify: bool | None = None
    group_claim: str | None = Field(None, max_length=200, description=f"{CLAIM_DOC}; an empty string removes it")


# --- memory ----------------------------------------------------------------------------------------------


def _memory(state: ServeState) -> Any:
    memory = state.core.memory
    if memory is None:
        raise ConfigError("Memory is off on this agent.", "Set memory.enabled = true and restart shoal serve.")
    return memory


@router.get("/memory/sources", summary="Stored notes, documents and shared items, newest first", responses=_MEMORY_OFF)
async def memory_sources(
    state: State,
    kind: Annotated[Literal["note", "document", "shared"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    return list(await _memory(state).sources(kind=kind, status="indexed", limit=limit))


@router.get("/memory/sources/{source_id}", summary="The text of one stored item, chunk by chunk", responses=_MEMORY_OFF)
async def memory_source(state: State, source_id: SourceId) -> list[dict[str, Any]]:
    return list(await _memory(state).source_chunks(source_id))


@router.delete("/memory/sources/{source_id}", summary="Forget a stored item", responses=documented(404, 503))
async def memory_forget(state: State, source_id: SourceId) -> dict[str, Any]:
    memory = _memory(state)
    try:
        row = await memory.forget(source_id)
    except UserError as exc:
        raise NotFound(exc.message, exc.fix) from exc
    return dataclasses.asdict(row)


@router.get("/memory/stats", summary="Counts, the embedding model and its state", responses=_MEMORY_OFF)
async def memory_stats(state: State) -> dict[str, Any]:
    return dict(await _memory(state).stats())


# --- schedule --------------------------------------------------------------------------------------------


@router.patch(
    "/schedule/{job_id}",
    summary="Change a job's prompt, name, schedule or options",
    responses=documented(404, 422, 503),
)
async def schedule_update(state: State, job_id: Ident, body: JobPatch) -> dict[str, Any]:
    job = await _job(state, job_id)
    given = [k for k in ("cron", "every", "at") if getattr(body, k) is not None]
    if len(given) > 1:
        raise UserError("Give at most one of cron, every and at.", 'e.g. {"every": "2h"}')
    changes = {k: v for k, v in body.model_dump().items() if v is not None and k != "catch_up"}
    if "catch_up" in body.model_fields_set:
        changes["catch_up"] = body.catch_up
    return dict((await _schedule(state).update_job(job.id, **changes)).to_dict())
