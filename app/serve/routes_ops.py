"""Tools and approvals, memory search, schedule, group status, /health and /metrics."""

from __future__ import annotations

import dataclasses
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from app.serve import schemas as s
from app.serve.errors import Conflict, NotFound, documented
from app.serve.metrics import CONTENT_TYPE
from app.serve.routes_agent import State
from app.serve.streams import approval_dict
from core.errors import ConfigError, ShoalError, UserError
from core.tools.registry import ApprovalDecision

router = APIRouter(responses=documented(400, 401, 429))
api = APIRouter(prefix="/api", responses=documented(400, 401, 429))
Ident = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z_.:-]+$")]


def shoal_version() -> str:
    try:
        return version("shoal")
    except PackageNotFoundError:
        return "0"


@router.get("/health", summary="Liveness (no token needed)", responses=documented())
async def health() -> dict[str, str]:
    return {"status": "ok", "version": shoal_version()}


@router.head("/health", include_in_schema=False)
async def health_head() -> Response:
    """Probes that use HEAD (some load balancers do)."""
    return Response(status_code=200)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(state: State) -> Response:
    await state.refresh_group_figures()
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@api.get("/status", summary="The agent: model, group, scheduler")
async def status(state: State) -> s.Health:
    core = state.core
    return s.Health(
        status="ok",
        version=shoal_version(),
        model=core.provider.model_id if _model_configured(core) else "",
        group=core.group is not None,
        scheduler=bool(getattr(getattr(core, "schedule", None), "running", False)),
    )


def _model_configured(core: Any) -> bool:
    try:
        return bool(core.provider.model_id)
    except ShoalError:
        return False


# --- tools and approvals ---------------------------------------------------------------------------------


@api.get("/tools", summary="Every tool, enabled or not, with its risk tier")
async def tools(state: State) -> list[s.ToolOut]:
    core = state.core
    return [
        s.ToolOut(
            name=spec.name,
            description=spec.description,
            risk=spec.risk.value,
            source=spec.source,
            enabled=core.tool_enabled(spec.name),
            parameters=spec.parameters,
        )
        for spec in core.tool_specs()
    ]


@api.put("/tools/{name}", summary="Enable or disable a tool (until restart)", responses=documented(404, 422))
async def toggle_tool(state: State, name: Ident, body: s.ToolToggle) -> s.ToolOut:
    if name not in state.core.registry:
        raise NotFound(f"No tool named {name!r}.", "GET /api/tools lists them.")
    state.core.set_tool_enabled(name, body.enabled)
    return next(t for t in await tools(state) if t.name == name)


@api.get("/approvals", summary="Questions waiting for a person")
async def approvals(state: State) -> list[s.ApprovalOut]:
    return [s.ApprovalOut(**approval_dict(item)) for item in state.broker.pending.values()]


@api.post("/approvals/{approval_id}", summary="Answer a pending approval", responses=documented(404, 409, 422))
async def answer(state: State, approval_id: Ident, body: s.ApprovalAnswer) -> s.ApprovalOut:
    item = state.broker.pending.get(approval_id)
    if item is None:
        raise NotFound(f"No pending approval {approval_id!r}.", "It was answered or withdrawn; GET /api/approvals.")
    if not state.broker.resolve(approval_id, ApprovalDecision(body.decision)):
        raise Conflict(f"Approval {approval_id!r} was already answered.", "Nothing to do.")
    return s.ApprovalOut(**approval_dict(item))


# --- memory ----------------------------------------------------------------------------------------------


@api.get("/memory/search", summary="Hybrid search over notes and documents", responses=documented(400, 503))
async def memory_search(
    state: State,
    q: Annotated[str, Query(min_length=1, max_length=2000)],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[s.MemoryHit]:
    memory = state.core.memory
    if memory is None:
        raise ConfigError("Memory is off on this agent.", "Set memory.enabled = true and restart shoal serve.")
    if not q.strip():
        raise UserError("The query is empty.", "Pass words to search for.")
    hits = await memory.recall(q, limit=limit)
    fields = s.MemoryHit.model_fields
    return [s.MemoryHit(**{k: v for k, v in dataclasses.asdict(h).items() if k in fields}) for h in hits]


# --- schedule --------------------------------------------------------------------------------------------


def _schedule(state: Any) -> Any:
    schedule = getattr(state.core, "schedule", None)
    if schedule is None:
        raise ConfigError("The scheduler is not available on this agent.", "Set schedule.enabled = true.")
    return schedule


def _job_out(job: Any) -> s.JobOut:
    return s.JobOut(**job.to_dict())


@api.get("/schedule", summary="Scheduled prompts", responses=documented(503))
async def schedule_list(state: State) -> list[s.JobOut]:
    return [_job_out(job) for job in await _schedule(state).list_jobs()]


@api.post("/schedule", status_code=201, summary="Schedule a prompt", responses=documented(422, 503))
async def schedule_add(state: State, body: s.JobIn) -> s.JobOut:
    given = [k for k in ("cron", "every", "at") if getattr(body, k)]
    if len(given) != 1:
        raise UserError("Give exactly one of cron, every and at.", 'e.g. {"cron": "0 8 * * 1-5"}')
    job = await _schedule(state).add_job(
        body.prompt,
        cron=body.cron,
        every=body.every,
        at=body.at,
        name=body.name,
        catch_up=body.catch_up,
        notify=body.notify,
        group_claim=body.group_claim,
    )
    return _job_out(job)


@api.get("/schedule/runs", summary="Recent runs of every job", responses=documented(503))
async def schedule_runs(state: State, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[s.RunOut]:
    return [s.RunOut(**run.to_dict()) for run in await _schedule(state).runs(None, limit)]


async def _job(state: Any, job_id: str) -> Any:
    try:
        return await _schedule(state).get_job(job_id)
    except UserError as exc:
        raise NotFound(exc.message, exc.fix) from exc


@api.get("/schedule/{job_id}", summary="A job and its recent runs", responses=documented(404, 503))
async def schedule_get(state: State, job_id: Ident) -> s.JobDetail:
    job = await _job(state, job_id)
    runs = await _schedule(state).runs(job.id, 20)
    return s.JobDetail(**job.to_dict(), runs=[s.RunOut(**r.to_dict()) for r in runs])


@api.put("/schedule/{job_id}", summary="Enable or disable a job", responses=documented(404, 422, 503))
async def schedule_toggle(state: State, job_id: Ident, body: s.JobToggle) -> s.JobOut:
    job = await _job(state, job_id)
    return _job_out(await _schedule(state).set_enabled(job.id, body.enabled))


@api.delete("/schedule/{job_id}", status_code=204, summary="Remove a job", responses=documented(404, 503))
async def schedule_remove(state: State, job_id: Ident) -> Response:
    job = await _job(state, job_id)
    await _schedule(state).remove_job(job.id)
    return Response(status_code=204)


@api.post("/schedule/{job_id}/run", summary="Run a job now and wait for it", responses=documented(404, 503))
async def schedule_run(state: State, job_id: Ident) -> s.RunOut:
    job = await _job(state, job_id)
    return s.RunOut(**(await _schedule(state).run_now(job.id)).to_dict())


# --- group -----------------------------------------------------------------------------------------------


@api.get("/group", summary="Kafka group: state, members, outbox")
async def group_status(state: State) -> s.GroupStatus:
    core = state.core
    settings = core.settings.group
    runtime = core.group
    if runtime is None:
        return s.GroupStatus(enabled=settings.enabled, joined=False, name=settings.name)
    await state.refresh_group_figures()
    node = runtime.node
    return s.GroupStatus(
        enabled=settings.enabled,
        joined=node.state == "online",
        name=settings.name,
        agent=node.name,
        state=node.state,
        members=[m.card() for m in runtime.members()],
        outbox_depth=state.group_figures.get("outbox_depth"),
    )
