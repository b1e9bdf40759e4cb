"""Gateways: ChirpStack's view of their health beside what the uplinks show."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ioc_api.deps import Db, Reader
from ioc_api.queries.monitoring import gateway_detail, list_gateways
from ioc_api.schemas.monitoring import GatewayDetail, GatewayPublic

__all__ = ["router"]

router = APIRouter(tags=["gateways"])

Hours = Annotated[int, Query(ge=1, le=168, description="how far back the uplinks are looked at")]


@router.get("/gateways", response_model=list[GatewayPublic], summary="Gateways with status and traffic")
def get_gateways(conn: Db, scope: Reader, hours: Hours = 1) -> list[GatewayPublic]:
    return list_gateways(conn, scope.zones, hours=hours)


@router.get("/gateways/{gateway_eui}", response_model=GatewayDetail, summary="A gateway and the devices it hears")
def get_gateway(gateway_eui: Annotated[str, Path(pattern=r"^[0-9A-Fa-f]{16}$")], conn: Db, scope: Reader,
                hours: Hours = 24) -> GatewayDetail:
    return gateway_detail(conn, gateway_eui, scope.zones, hours=hours)
