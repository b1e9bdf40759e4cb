"""API users and their zones."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection, ConstraintViolated, DuplicateKey, database_errors
from ioc_api.keys import NewKey, new_key
from ioc_api.queries.audit import audit
from ioc_core.errors import AlreadyExists, Invalid, NotFound

__all__ = ["NAME_PATTERN", "ROLES", "ApiUser", "create_user", "find_by_prefix", "list_users", "revoke_user"]

NAME_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
"""A user's name, as the table's CHECK has it: checked here too, so a bad name is an answer, not a database error
(whose detail would echo the row, the new key's hash included)."""
ROLES = ("admin", "operator", "technician", "developer")


@dataclass(frozen=True, slots=True)
class ApiUser:
    id: int
    name: str
    role: str
    zones: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    key_hash: bytes = b""


_SELECT = """SELECT u.id, u.name, u.role,
                    coalesce(array_agg(z.code ORDER BY z.code) FILTER (WHERE z.code IS NOT NULL), '{}'),
                    u.created_at, u.revoked_at, u.key_hash
             FROM api_users u
             LEFT JOIN api_user_zones uz ON uz.user_id = u.id
             LEFT JOIN zones z ON z.id = uz.zone_id"""


def _user(row: tuple[Any, ...]) -> ApiUser:
    return ApiUser(row[0], row[1], row[2], tuple(row[3]), row[4], row[5], bytes(row[6]))


def find_by_prefix(conn: Connection, prefix: str) -> ApiUser | None:
    row = conn.execute(_SELECT + " WHERE u.key_prefix = %s GROUP BY u.id", (prefix,)).fetchone()
    return _user(row) if row else None


def list_users(conn: Connection) -> list[ApiUser]:
    return [_user(r) for r in conn.execute(_SELECT + " GROUP BY u.id ORDER BY u.name").fetchall()]


def create_user(conn: Connection, name: str, role: str, zones: list[str], *, actor: str) -> tuple[ApiUser, NewKey]:
    """Create a user with a new key; the key itself is returned once and never stored."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise Invalid(f"a user name is 1 to 64 letters, digits or . _ @ - (got {name!r})", field="name")
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", field="role")
    key = new_key()
    with conn.transaction():
        zone_ids = []
        for code in dict.fromkeys(zones):  # a zone named twice is assigned once
            row = conn.execute(
                "SELECT id FROM zones WHERE code = %s AND valid_to IS NULL", (code,)
            ).fetchone()
            if row is None:
                raise NotFound(f"zone {code!r} does not exist", field="zones")
            zone_ids.append(row[0])
        try:
            with database_errors("create the user"), conn.transaction():
                created = conn.execute(
                    "INSERT INTO api_users (name, role, key_prefix, key_hash) VALUES (%s, %s, %s, %s) RETURNING id",
                    (name, role, key.prefix, key.digest),
                ).fetchone()
        except DuplicateKey as err:
            raise AlreadyExists(f"user {name!r} exists already", field="name", constraint=err.constraint) from err
        except ConstraintViolated as err:
            # Never the error's text: its detail shows the failing row, and with it the key's hash.
            raise Invalid(f"the user breaks a rule of the users table ({err.constraint})") from err
        assert created is not None
        for zone_id in zone_ids:
            conn.execute("INSERT INTO api_user_zones (user_id, zone_id) VALUES (%s, %s)", (created[0], zone_id))
        audit(conn, actor, "create", "user", name, {"role": role, "zones": zones, "key": "***"})
        user = find_by_prefix(conn, key.prefix)
    assert user is not None
    return user, key


def revoke_user(conn: Connection, name: str, *, actor: str) -> ApiUser:
    with conn.transaction():
        row = conn.execute(
            "UPDATE api_users SET revoked_at = coalesce(revoked_at, now()) WHERE name = %s RETURNING key_prefix",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"user {name!r} does not exist")
        # A revoked person keeps no door open: their broker accounts go with the key.
        mqtt = conn.execute(
            """UPDATE mqtt_accounts SET revoked_at = now()
               WHERE user_id = (SELECT id FROM api_users WHERE name = %s) AND revoked_at IS NULL
               RETURNING username""",
            (name,),
        ).fetchall()
        audit(conn, actor, "revoke", "user", name, {"mqtt_accounts": [r[0] for r in mqtt]} if mqtt else {})
        user = find_by_prefix(conn, row[0])
    assert user is not None
    return user
