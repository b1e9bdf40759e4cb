"""Dead letters: what the ingest could not process, with the reason, for admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from ioc_api.deps import Caller, Db, require_role
from ioc_api.queries.monitoring import dead_letters
from ioc_api.schemas.monitoring import DeadLetterPage

__all__ = ["router"]

router = APIRouter(tags=["dead letters"])


@router.get("/dead-letters", response_model=DeadLetterPage, summary="Dead letters, newest first")
def get_dead_letters(
    conn: Db,
    _admin: Annotated[Caller, Depends(require_role("admin"))],
    stage: Literal["parse", "device", "decode", "normalise", "store", "crash"] | None = None,
    unresolved: Annotated[bool, Query(description="only those no replay has fixed")] = True,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeadLetterPage:
    return dead_letters(conn, stage=stage, unresolved=unresolved, before_id=before_id, limit=limit)
