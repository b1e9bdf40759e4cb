"""API errors and their HTTP mapping, handled in one place (``install``).

    ApiError                 JSON body {"error": {"code", "message", "field"?}}
    ├── Unauthorized   401   missing, malformed, unknown or revoked key
    ├── Forbidden      403   a known key whose role or zones do not allow the request
    ├── NotFound       404
    ├── Conflict       409   the thing exists already
    ├── Invalid        422   a value breaks a rule the schema cannot express (outside the city, unknown model)
    ├── BodyTimeout    408   a request body that stopped arriving
    ├── TooLarge       413   a request body (or a CSV's rows) past its limit
    └── TooManyRequests 429  a key past its rate, its concurrent exports or imports; ``Retry-After`` says when

    RetriableError     503   the database is unreachable or no connection freed up in time; ``Retry-After``
    psycopg.OperationalError 503   the connection broke during the request (the same reaction)
    psycopg.DataError  422   a request value PostgreSQL cannot take (NUL in text, a time out of range)
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ioc_core.errors import IocError, RetriableError

__all__ = [
    "RESPONSES",
    "ApiError",
    "BodyTimeout",
    "Conflict",
    "ErrorBody",
    "Forbidden",
    "Invalid",
    "NotFound",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "install",
    "response",
    "unavailable",
]


class ApiError(IocError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Invalid(ApiError):
    status = 422
    code = "invalid"


class BodyTimeout(ApiError):
    status = 408
    code = "body_timeout"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid"])
    message: str = Field(examples=["(10.77, 106.7) is outside the city area: no zone contains it"])
    field: str | None = Field(default=None, examples=["latitude"])


class ErrorBody(BaseModel):
    """Every error the API answers has this shape."""

    error: ErrorDetail


# Declared on every router, so the OpenAPI document lists what each route may answer besides success.
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "missing, unknown or revoked API key"),
        (403, "the key's role or zones do not allow this"),
        (404, "no such device, zone, gateway or user"),
        (409, "conflicts with what exists (a DevEUI registered already, a decommissioned device)"),
        (413, "the request body is past the route's limit (IOC_API_BODY_MAX_BYTES, IOC_API_IMPORT_MAX_BYTES)"),
        (422, "a value is invalid; `field` names it"),
        (503, "the database is unavailable or busy; retry after `Retry-After` seconds"),
    )
}


def _body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def response(exc: ApiError) -> JSONResponse:
    """The answer to an API error; also sent by the body guard, which runs before routing."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after_s)}
    if exc.status in (408, 413):
        # The rest of the body is not read, so the connection cannot carry another request.
        headers = {"Connection": "close"}
    return JSONResponse(_body(exc.code, exc.message, exc.field), status_code=exc.status, headers=headers)


def unavailable(exc: Exception, retry_after_s: int) -> JSONResponse:
    """503 for a database that is down or has no connection free: the client should come back, not give up."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else "the database is unavailable"
    return JSONResponse(_body("unavailable", message), status_code=503,
                        headers={"Retry-After": str(retry_after_s)})


def install(app: FastAPI, *, retry_after_s: int = 5) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return response(exc)

    @app.exception_handler(RetriableError)
    async def retriable(_request: Request, exc: RetriableError) -> JSONResponse:
        return unavailable(exc, retry_after_s)

    @app.exception_handler(psycopg.OperationalError)
    async def broken(_request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        # A connection that broke mid-request (a restart, a network cut): the same reaction as no connection.
        return unavailable(Exception("the database connection was lost; retry"), retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        body = _body("invalid", str(first.get("msg", "invalid request")), field or None)
        body["error"]["details"] = [  # type: ignore[assignment]
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg"))} for e in problems
        ]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework refusals (a body that does not parse, a wrong method) in the same shape as ours.
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
                413: "too_large"}.get(exc.status_code, "error")
        return JSONResponse(_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(psycopg.DataError)
    async def unstorable(_request: Request, exc: psycopg.DataError) -> JSONResponse:
        # SQL here is parameterised, so a data exception (SQLSTATE class 22) is a value from the request.
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "a value cannot be stored"
        return JSONResponse(_body("invalid", message), status_code=422)
