"""Dependencies shared by the routers: a database connection and the caller, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateways.database import Connection, ConnectionPool, borrow
from ioc_api.body_guard import CALLER_SCOPE_KEY
from ioc_api.errors import Unauthorized
from ioc_api.keys import prefix_of, verify
from ioc_api.provisioning import Provisioner
from ioc_api.queries.users import find_by_prefix
from ioc_api.registration import RegistrationRules
from ioc_core.errors import NotAllowed
from operations.sop import SopLibrary

__all__ = [
    "Access",
    "Caller",
    "CurrentCaller",
    "Db",
    "FunctionDb",
    "ProvisionerDep",
    "Reader",
    "RulesDep",
    "SopDep",
    "Writer",
    "authenticate",
    "authenticator",
    "read_scope",
    "require_role",
    "write_scope",
]

_bearer = HTTPBearer(auto_error=False, description="an IOC API key: `Authorization: Bearer ioc_…`")


def _pool(request: Request) -> ConnectionPool[Connection]:
    pool: ConnectionPool[Connection] = request.app.state.pool
    return pool


_CONNECTION_SCOPE_KEY = "ioc.connection"


def _db(request: Request) -> Iterator[Connection]:
    # A short wait: past it the pool is exhausted or the database is down, and 503 with Retry-After says so.
    with borrow(_pool(request), timeout=request.app.state.pool_timeout_s) as conn:
        # Left where _caller finds it: one request never holds two connections (two per request would halve the
        # pool, and a pool of one would wait on itself).
        request.scope[_CONNECTION_SCOPE_KEY] = conn
        try:
            yield conn
        finally:
            request.scope.pop(_CONNECTION_SCOPE_KEY, None)


Db = Annotated[Connection, Depends(_db)]
FunctionDb = Annotated[Connection, Depends(_db, scope="function")]
"""A connection given back when the route function returns, before its response is sent (streamed answers)."""


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: str
    zones: tuple[str, ...]


def authenticate(conn: Connection, authorization: str | None) -> Caller:
    """The caller an ``Authorization`` header names; Unauthorized when it names none that may call."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    key = key.strip()
    prefix = prefix_of(key)
    user = find_by_prefix(conn, prefix) if prefix else None
    if user is None or not verify(key, user.key_hash):
        raise Unauthorized("unknown API key")
    if user.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    return Caller(user.name, user.role, user.zones)


def authenticator(pool: Callable[[], ConnectionPool[Connection]],
                  timeout_s: float) -> Callable[[str | None], Awaitable[Caller]]:
    """``authenticate`` for the body guard: off the event loop, with a connection held only for the look-up
    (``pool`` is called then, as the pool opens with the app's lifespan, after the middleware is built)."""

    def check(authorization: str | None) -> Caller:
        with borrow(pool(), timeout=timeout_s) as conn:
            return authenticate(conn, authorization)

    async def run(authorization: str | None) -> Caller:
        return await run_in_threadpool(check, authorization)

    return run


def _caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    # A request with a body was authenticated by the body guard before its body was read.
    checked = request.scope.get(CALLER_SCOPE_KEY)
    if isinstance(checked, Caller):
        return checked
    header = f"{credentials.scheme} {credentials.credentials}" if credentials is not None else None
    conn: Connection | None = request.scope.get(_CONNECTION_SCOPE_KEY)
    if conn is not None:  # the route's own connection, taken already
        return authenticate(conn, header)
    # The route takes its connection after this, or none at all (an import takes it once its body is in).
    with borrow(_pool(request), timeout=request.app.state.pool_timeout_s) as conn:
        return authenticate(conn, header)


CurrentCaller = Annotated[Caller, Depends(_caller)]


def require_role(*roles: str) -> Callable[[Caller], Caller]:
    def check(caller: CurrentCaller) -> Caller:
        if caller.role not in roles:
            raise NotAllowed(f"role {caller.role!r} may not do this; needs {' or '.join(roles)}")
        return caller

    return check


def read_scope(caller: Caller) -> frozenset[str] | None:
    """Zones whose devices a caller may read: operators without zones see the whole city (the city centre)."""
    if caller.role == "admin" or (caller.role == "operator" and not caller.zones):
        return None
    if caller.role in ("operator", "technician"):
        return frozenset(caller.zones)
    raise NotAllowed(f"role {caller.role!r} may read open data only")


def write_scope(caller: Caller) -> frozenset[str] | None:
    """Zones where a caller may register and change devices: technicians only in theirs."""
    if caller.role == "admin":
        return None
    if caller.role == "technician":
        if not caller.zones:
            raise NotAllowed("no zones are assigned to you; ask an admin to add some")
        return frozenset(caller.zones)
    raise NotAllowed(f"role {caller.role!r} may not change devices; needs admin or technician")


def _reader(caller: CurrentCaller) -> Access:
    return Access(caller, read_scope(caller))


def _writer(caller: CurrentCaller) -> Access:
    return Access(caller, write_scope(caller))


@dataclass(frozen=True, slots=True)
class Access:
    caller: Caller
    zones: frozenset[str] | None


Reader = Annotated[Access, Depends(_reader)]
Writer = Annotated[Access, Depends(_writer)]


def _rules(request: Request) -> RegistrationRules:
    rules: RegistrationRules = request.app.state.rules
    return rules


RulesDep = Annotated[RegistrationRules, Depends(_rules)]


def _provisioner(request: Request) -> Provisioner:
    provisioner: Provisioner = request.app.state.provisioner
    return provisioner


ProvisionerDep = Annotated[Provisioner, Depends(_provisioner)]


def _sop(request: Request) -> SopLibrary:
    sop: SopLibrary = request.app.state.sop
    return sop


SopDep = Annotated[SopLibrary, Depends(_sop)]
"""The SOP cards, read and validated when the app was built."""
