"""How Shoal's errors become HTTP answers: a status from who must act, and the same body everywhere.

The body is core.errors' own shape (error, actor, message, fix), so an API client can show the fix just as
the desktop does. The `/v1` OpenAI-compatible routes answer in OpenAI's error shape instead, because the
clients there (the `openai` SDK and friends) read `error.message`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.serve.schemas import ErrorBody, OpenAIError
from core.errors import Actor, ShoalError, UserError, classify

log = logging.getLogger(__name__)

_STATUS_BY_ACTOR = {Actor.USER: 400, Actor.CONFIG: 503, Actor.NETWORK: 502, Actor.BUG: 500}
# Errors that say more than their actor (by class name: the policy engine's errors live in core.policy).
_STATUS_BY_NAME = {"NotFound": 404, "Conflict": 409, "QuotaExceeded": 429, "RateLimitExceeded": 429,
                   "PolicyDenied": 403}  # fmt: skip
_DESCRIPTIONS = {
    400: "The request cannot be carried out as given (see message and fix)",
    401: "No valid bearer token",
    403: "The policy denies it",
    404: "No such item",
    409: "The item is in a state that does not allow this",
    422: "The body or a parameter failed validation",
    429: "Rate limit or quota exceeded (Retry-After says when to retry)",
    500: "Shoal failed (a bug: the message says what)",
    502: "An endpoint the agent depends on failed",
    503: "The server is not configured for this (a model is missing…)",
}


class NotFound(UserError):
    pass


class Conflict(UserError):
    pass


def documented(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, with the ErrorBody schema (or OpenAI's error shape for the /v1
    routes); 422 keeps FastAPI's own."""
    model = OpenAIError if openai else ErrorBody
    return {
        status: {"model": model, "description": _DESCRIPTIONS[status]}
        for status in statuses
        if status != 422 or openai  # the /v1 routes answer validation errors in OpenAI's shape too
    }


def openai_body(status: int, error: str, message: str, fix: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    text = message + (f" ({fix})" if fix else "")
    return {"error": {"message": text, "type": kind, "code": error, "param": None}}


def status_for(error: ShoalError) -> int:
    for cls in type(error).__mro__:
        if cls.__name__ in _STATUS_BY_NAME:
            return _STATUS_BY_NAME[cls.__name__]
    return _STATUS_BY_ACTOR[error.actor]


def openai_error(status: int, error: ShoalError) -> JSONResponse:
    return JSONResponse(openai_body(status, type(error).__name__, error.message, error.fix), status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(ShoalError)
    async def shoal_error(request: Request, exc: ShoalError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc.describe())
        if request.url.path.startswith("/v1/"):
            return openai_error(status, exc)
        return JSONResponse(exc.to_dict(), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 (`detail` names each field and the reason); under /v1 in OpenAI's shape."""
        if not request.url.path.startswith("/v1/"):
            return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        body = openai_body(422, "ValidationError", f"Invalid request: {reasons}", "")
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own refusals (a body that is not UTF-8, an unknown path, a wrong method) in our shape."""
        names = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed"}
        error = UserError(str(exc.detail), "Check the request against /openapi.json.")
        if request.url.path.startswith("/v1/"):
            body = openai_body(exc.status_code, names.get(exc.status_code, "HTTPError"), error.message, error.fix)
        else:
            body = {**error.to_dict(), "error": names.get(exc.status_code, "HTTPError")}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s: unexpected error", request.method, request.url.path)
        error = classify(exc)
        if request.url.path.startswith("/v1/"):
            return openai_error(500, error)
        return JSONResponse(error.to_dict(), status_code=500)
