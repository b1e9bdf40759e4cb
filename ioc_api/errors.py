"""The API's answer to every error, chosen in one place: ``STATUSES`` maps an error class to its HTTP status and code.

    error                                   status  code
    RefusedError (ioc_core.errors)                         a domain rule refused the request
    ├── NotFound                            404     not_found
    ├── NotAllowed                          403     forbidden
    ├── Conflict, AlreadyExists             409     conflict
    ├── Invalid                             422     invalid            ``field`` names the value
    └── OverLimit                           413     too_large
    ValueRefused (gateways.database)        422     invalid            a request value PostgreSQL cannot take
    RetriableError                          503     unavailable        database unreachable, no connection free in
                                                                       time, or the connection lost mid-request;
                                                                       ``Retry-After`` says when to come back
    BrokerUnwritable (ioc_api.broker)       503     broker_unavailable nothing was stored
    ApiError                                400     bad_request        HTTP itself, raised in this layer only:
    ├── Unauthorized                        401     unauthorized       missing, malformed, unknown or revoked key
    ├── BodyTimeout                         408     body_timeout       a request body that stopped arriving
    ├── TooLarge                            413     too_large          a request body past its limit
    └── TooManyRequests                     429     rate_limited       a key past its rate, its concurrent exports
                                                                       or imports; ``Retry-After`` says when

Every answer has the body {"error": {"code", "message", "field"?}}. Any other error is a bug: 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateways.database import ConnectionLost, ValueRefused
from ioc_api.broker import BrokerUnwritable
from ioc_core.errors import (
    Conflict,
    Invalid,
    IocError,
    NotAllowed,
    NotFound,
    OverLimit,
    RefusedError,
    RetriableError,
)

__all__ = [
    "RESPONSES",
    "STATUSES",
    "ApiError",
    "BodyTimeout",
    "ErrorBody",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "install",
    "response",
]


class ApiError(IocError):
    """An error of HTTP itself (a key, a body, a rate), raised by the API layer only; the rest are domain errors."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Unauthorized(ApiError):
    pass


class BodyTimeout(ApiError):
    pass


class TooLarge(ApiError):
    pass


class TooManyRequests(ApiError):
    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


STATUSES: dict[type[IocError], tuple[int, str]] = {
    NotFound: (404, "not_found"),
    NotAllowed: (403, "forbidden"),
    Conflict: (409, "conflict"),
    Invalid: (422, "invalid"),
    OverLimit: (413, "too_large"),
    ValueRefused: (422, "invalid"),
    RetriableError: (503, "unavailable"),
    BrokerUnwritable: (503, "broker_unavailable"),
    ApiError: (400, "bad_request"),
    Unauthorized: (401, "unauthorized"),
    BodyTimeout: (408, "body_timeout"),
    TooLarge: (413, "too_large"),
    TooManyRequests: (429, "rate_limited"),
}
"""The HTTP status and code of each error class; an error takes the row of its nearest class here."""


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


def _status(exc: IocError) -> tuple[int, str] | None:
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            return STATUSES[cls]
    return None


def _message(exc: IocError) -> str:
    if isinstance(exc, RefusedError | ApiError):
        return exc.message
    if isinstance(exc, ConnectionLost):
        return "the database connection was lost; retry"  # the driver's words mean nothing to a client
    if isinstance(exc, ValueRefused):
        # SQL here is parameterised, so a data exception (SQLSTATE class 22) is a value from the request.
        return exc.detail or "a value cannot be stored"
    if isinstance(exc, RetriableError):
        return _first_line(exc) or "the database is unavailable"
    return str(exc)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def response(exc: IocError, *, retry_after_s: int) -> JSONResponse | None:
    """The answer to ``exc``, from ``STATUSES``; None for an error the table does not know (a bug: 500). Also
    used by the body guard, which runs before routing."""
    found = _status(exc)
    if found is None:
        return None
    status, code = found
    headers: dict[str, str] | None = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, RetriableError):
        # The database is down or has no connection free: the client should come back, not give up.
        headers = {"Retry-After": str(retry_after_s)}
    elif status in (408, 413):
        # The rest of the body is not read, so the connection cannot carry another request.
        headers = {"Connection": "close"}
    field = exc.field if isinstance(exc, RefusedError | ApiError) else None
    return JSONResponse(_body(code, _message(exc), field), status_code=status, headers=headers)


def install(app: FastAPI, *, retry_after_s: int = 5) -> None:
    async def answer(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IocError)
        reply = response(exc, retry_after_s=retry_after_s)
        assert reply is not None  # registered only for the classes of the table
        return reply

    for cls in STATUSES:
        app.add_exception_handler(cls, answer)

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
