"""Liveness and readiness for load balancers and service managers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateways.database import Connection, ConnectionPool

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers", responses={503: {"description": "database unreachable"}})
def readyz(request: Request) -> JSONResponse:
    pool: ConnectionPool[Connection] = request.app.state.pool
    try:
        with pool.connection(timeout=2.0) as conn:
            conn.execute("SELECT 1")
    except Exception as err:  # any failure means "not ready"; the reason is for the operator
        return JSONResponse({"status": "unavailable", "reason": type(err).__name__}, status_code=503)
    return JSONResponse({"status": "ok"})
