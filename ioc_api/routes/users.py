"""Users and their API keys (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ioc_api.broker import BrokerDep
from ioc_api.deps import Caller, Db, require_role
from ioc_api.queries.mqtt_accounts import apply_current, list_accounts
from ioc_api.queries.users import ApiUser, create_user, list_users, revoke_user
from ioc_api.schemas.users import UserCreate, UserCreated, UserPublic

__all__ = ["router"]

router = APIRouter(prefix="/users", tags=["users"])
Admin = Annotated[Caller, Depends(require_role("admin"))]


def _public(user: ApiUser) -> UserPublic:
    return UserPublic(name=user.name, role=user.role,  # type: ignore[arg-type]
                      zones=list(user.zones), created_at=user.created_at, revoked_at=user.revoked_at)


@router.get("", response_model=list[UserPublic], summary="List users")
def get_users(conn: Db, _admin: Admin) -> list[UserPublic]:
    return [_public(u) for u in list_users(conn)]


@router.post("", response_model=UserCreated, status_code=201, summary="Create a user and show its key once")
def post_user(body: UserCreate, conn: Db, admin: Admin) -> UserCreated:
    user, key = create_user(conn, body.name, body.role, body.zones, actor=admin.name)
    return UserCreated(**_public(user).model_dump(), key=key.key)


@router.delete("/{name}", response_model=UserPublic,
               summary="Revoke a user's key (and the user's MQTT credentials, reloading the broker)")
def delete_user(name: str, conn: Db, admin: Admin, broker: BrokerDep) -> UserPublic:
    user = revoke_user(conn, name, actor=admin.name)
    if user.role == "developer":
        apply_current(conn, broker.write)
        broker.reload(end=[a.username for a in list_accounts(conn, owner=user.name, include_revoked=True)])
    return _public(user)
