"""MQTT credentials for the open feed: developers manage their own, admins see and revoke anyone's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from ioc_api.broker import BrokerDep, BrokerOutcome
from ioc_api.deps import Caller, Db, require_role
from ioc_api.errors import ErrorBody
from ioc_api.queries.mqtt_accounts import (
    MqttAccount,
    create_developer_account,
    find_account,
    list_accounts,
    revoke_account,
)
from ioc_api.schemas.mqtt_accounts import (
    BrokerStatus,
    CredentialCreate,
    CredentialCreated,
    CredentialPublic,
    CredentialRevoked,
)
from ioc_core.errors import NotAllowed, NotFound
from ioc_core.mqtt_access import OPEN_FEED_FILTER

__all__ = ["router"]

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "the broker's files could not be written; nothing changed"}
}
router = APIRouter(prefix="/mqtt/credentials", tags=["mqtt"])
Developer = Annotated[Caller, Depends(require_role("developer"))]
AdminOrDeveloper = Annotated[Caller, Depends(require_role("admin", "developer"))]


def _public(account: MqttAccount) -> CredentialPublic:
    return CredentialPublic(username=account.username, role=account.role,  # type: ignore[arg-type]
                            owner=account.owner, label=account.label, created_at=account.created_at,
                            revoked_at=account.revoked_at)


def _status(outcome: BrokerOutcome) -> BrokerStatus:
    return BrokerStatus(state=outcome.state, detail=outcome.detail, sessions=outcome.sessions or None)


@router.get("", response_model=list[CredentialPublic], summary="List MQTT credentials")
def get_credentials(
    conn: Db,
    caller: AdminOrDeveloper,
    user: Annotated[str | None, Query(description="only this API user's (admins; developers may name only "
                                                   "themselves)")] = None,
    include_revoked: Annotated[bool, Query(description="revoked credentials too")] = False,
) -> list[CredentialPublic]:
    """Developers see their own credentials; admins everyone's, the platform's service accounts included.
    Passwords are never shown again."""
    if caller.role == "developer":
        if user is not None and user != caller.name:
            raise NotAllowed("developers may list only their own MQTT credentials", field="user")
        user = caller.name
    return [_public(a) for a in list_accounts(conn, owner=user, include_revoked=include_revoked)]


@router.post("", response_model=CredentialCreated, status_code=201, responses=_UNAVAILABLE,
             summary="Create MQTT credentials for yourself and show the password once")
def post_credentials(
    conn: Db, caller: Developer, broker: BrokerDep, body: Annotated[CredentialCreate | None, Body()] = None
) -> CredentialCreated:
    """Read-only access to the open feed (`ioc/v1/#`). The password is in this response only; `broker` says
    whether the broker already accepts it."""
    account, password = create_developer_account(
        conn, caller.name, label=body.label if body else None, limit=broker.credentials_per_developer,
        actor=caller.name, apply=broker.write,
    )
    return CredentialCreated(**_public(account).model_dump(), password=password, broker_url=broker.public_url,
                             topic_filter=OPEN_FEED_FILTER, broker=_status(broker.reload()))


@router.delete("/{username}", response_model=CredentialRevoked, responses=_UNAVAILABLE,
               summary="Revoke MQTT credentials")
def delete_credentials(username: str, conn: Db, caller: AdminOrDeveloper, broker: BrokerDep) -> CredentialRevoked:
    """Developers revoke their own, admins anyone's. The broker drops a connection that uses them at its
    reload. Revoking again writes the files and reloads again."""
    account = find_account(conn, username)
    if account is None:
        raise NotFound(f"MQTT account {username!r} does not exist")
    if caller.role == "developer" and account.owner != caller.name:
        raise NotAllowed("developers may revoke only their own MQTT credentials")
    revoked = revoke_account(conn, username, actor=caller.name, apply=broker.write)
    return CredentialRevoked(**_public(revoked).model_dump(), broker=_status(broker.reload(end=[username])))
