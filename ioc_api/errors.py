"""API errors and their HTTP mapping, handled in one place (``install``).

    ApiError                 JSON body {"error": {"code", "message", "field"?}}
    ├── Unauthorized   401   missing, malformed, unknown or revoked key
    ├── Forbidden      403   a known key whose role or zones do not allow the request
    ├── NotFound       404
    ├── Conflict       409   the thing exists already
    ├── Invalid        422   a value breaks a rule the schema cannot express (outside the city, unknown model)
    └── TooLarge       413   a request body past its limit
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ioc_core.errors import IocError

__all__ = ["ApiError", "Conflict", "Forbidden", "Invalid", "NotFound", "TooLarge", "Unauthorized", "install"]


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


class TooLarge(ApiError):
    status = 413
    code = "too_large"


def _body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(_body(exc.code, exc.message, exc.field), status_code=exc.status, headers=headers)

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
