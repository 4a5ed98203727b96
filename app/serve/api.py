"""The FastAPI application of `shoal serve`, built around a running core.

The core is started and stopped by the server (app/serve/server.py), not by the app's lifespan, so the
same app object can be mounted in tests and benchmarks around a core they own. Interactive docs pages
(/docs, /redoc) are off: they load scripts from a CDN, and Shoal makes no network call it was not asked
to make. The OpenAPI document itself is at /openapi.json.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.serve import errors
from app.serve.gate import PUBLIC_PATHS, Gate
from app.serve.routes_agent import router as agent_router
from app.serve.routes_live import router as live_router
from app.serve.routes_openai import router as openai_router
from app.serve.routes_ops import api as ops_api
from app.serve.routes_ops import router as ops_router
from app.serve.routes_ops import shoal_version
from app.serve.routes_panes import router as panes_router
from app.serve.state import ServeState

DESCRIPTION = """The headless API of a Shoal agent: chat (JSON or Server-Sent Events), sessions, the timeline
and traces, tools and approvals, memory search, the schedule and the group's status, plus an OpenAI-compatible
`/v1`. Every route but `/health` and `/openapi.json` needs `Authorization: Bearer <token>`."""


def create_app(state: ServeState) -> FastAPI:
    app = FastAPI(
        title="Shoal",
        version=shoal_version(),
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        **_no_telemetry(),
    )
    app.state.serve = state
    errors.install(app)
    app.include_router(ops_router)
    app.include_router(agent_router)
    app.include_router(live_router)
    app.include_router(panes_router)
    app.include_router(ops_api)
    app.include_router(openai_router)
    app.add_middleware(Gate, state=state)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _no_telemetry() -> dict[str, Any]:
    """FastAPI's OpenTelemetry hooks (newer releases), all off, and no exporter even when
    FASTAPI_OTEL_AUTO_CONFIGURE is set: Shoal records its own traces in the timeline and sends nothing
    anywhere it was not asked to."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    off = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False, "auto_configure": False}
    return {"telemetry": off}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the bearer scheme the Gate enforces (so clients and fuzzers know of it)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "`shoal serve --show-token` prints it"}
        }
        schema["security"] = [{"bearer": []}]
        for path in PUBLIC_PATHS:
            for operation in schema["paths"].get(path, {}).values():
                operation["security"] = []
        app.openapi_schema = schema
    return app.openapi_schema
