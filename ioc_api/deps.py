"""Dependencies shared by the routers: a database connection and the caller, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateways.database import Connection, ConnectionPool
from ioc_api.errors import Forbidden, Unauthorized
from ioc_api.keys import prefix_of, verify
from ioc_api.provisioning import Provisioner
from ioc_api.queries.devices import Registry
from ioc_api.queries.users import find_by_prefix

__all__ = [
    "Caller",
    "CurrentCaller",
    "Db",
    "ProvisionerDep",
    "Reader",
    "RegistryDep",
    "Scope",
    "Writer",
    "read_scope",
    "require_role",
    "write_scope",
]

_bearer = HTTPBearer(auto_error=False, description="an IOC API key: `Authorization: Bearer ioc_…`")


def _db(request: Request) -> Iterator[Connection]:
    pool: ConnectionPool[Connection] = request.app.state.pool
    with pool.connection() as conn:
        yield conn


Db = Annotated[Connection, Depends(_db)]


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: str
    zones: tuple[str, ...]


def _caller(
    conn: Db, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    key = credentials.credentials
    prefix = prefix_of(key)
    user = find_by_prefix(conn, prefix) if prefix else None
    if user is None or not verify(key, user.key_hash):
        raise Unauthorized("unknown API key")
    if user.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    return Caller(user.name, user.role, user.zones)


CurrentCaller = Annotated[Caller, Depends(_caller)]


def require_role(*roles: str) -> Callable[[Caller], Caller]:
    def check(caller: CurrentCaller) -> Caller:
        if caller.role not in roles:
            raise Forbidden(f"role {caller.role!r} may not do this; needs {' or '.join(roles)}")
        return caller

    return check


def read_scope(caller: Caller) -> frozenset[str] | None:
    """Zones whose devices a caller may read: operators without zones see the whole city (the city centre)."""
    if caller.role == "admin" or (caller.role == "operator" and not caller.zones):
        return None
    if caller.role in ("operator", "technician"):
        return frozenset(caller.zones)
    raise Forbidden(f"role {caller.role!r} may read open data only")


def write_scope(caller: Caller) -> frozenset[str] | None:
    """Zones where a caller may register and change devices: technicians only in theirs."""
    if caller.role == "admin":
        return None
    if caller.role == "technician":
        if not caller.zones:
            raise Forbidden("no zones are assigned to you; ask an admin to add some")
        return frozenset(caller.zones)
    raise Forbidden(f"role {caller.role!r} may not change devices; needs admin or technician")


def _reader(caller: CurrentCaller) -> Scope:
    return Scope(caller, read_scope(caller))


def _writer(caller: CurrentCaller) -> Scope:
    return Scope(caller, write_scope(caller))


@dataclass(frozen=True, slots=True)
class Scope:
    caller: Caller
    zones: frozenset[str] | None


Reader = Annotated[Scope, Depends(_reader)]
Writer = Annotated[Scope, Depends(_writer)]


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(_registry)]


def _provisioner(request: Request) -> Provisioner:
    provisioner: Provisioner = request.app.state.provisioner
    return provisioner


ProvisionerDep = Annotated[Provisioner, Depends(_provisioner)]
