"""Who changed what: the audit log, for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from ioc_api.deps import Caller, Db, require_role
from ioc_api.queries.audit import list_audit
from ioc_api.schemas.audit import AuditEntry, AuditPage

__all__ = ["router"]

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=AuditPage, summary="Audit records, newest first")
def get_audit(
    conn: Db,
    _admin: Annotated[Caller, Depends(require_role("admin"))],
    entity: Literal["device", "user", "zone", "incident", "warning", "notification_routes"] | None = None,
    entity_id: Annotated[str | None, Query(max_length=100,
                                           description="DevEUI, user name, zone code or incident id")] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62, description="next_before_id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    rows = list_audit(conn, entity=entity, entity_id=entity_id, actor=actor, since=since, limit=limit,
                      before_id=before_id)
    items = [AuditEntry(id=r[0], time=r[1], actor=r[2], action=r[3], entity=r[4], entity_id=r[5], changes=r[6])
             for r in rows]
    return AuditPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)
