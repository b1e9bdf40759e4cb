"""Accounts on the MQTT broker: developers' credentials and the platform's service accounts.

Every change runs under one advisory lock and calls ``apply`` inside its transaction, after the change and
before the commit, so the broker's files are written from exactly the state being committed: a failed write
rolls the change back, and two changes can never write the files out of order.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection, DuplicateKey, database_errors
from gateways.mosquitto_files import BrokerUser, hash_password
from ioc_api.queries.audit import audit
from ioc_core.errors import AlreadyExists, Conflict, Invalid, NotFound
from ioc_core.mqtt_access import GRANTS, ROLE_PLACE, SERVICE_ACCOUNTS, MqttRole, developer_username, label_slug

__all__ = [
    "Apply",
    "MqttAccount",
    "apply_current",
    "broker_users",
    "create_developer_account",
    "ensure_service_accounts",
    "find_account",
    "list_accounts",
    "new_password",
    "revoke_account",
    "rotate_service_account",
]

# Called inside the change's transaction with its connection: writes the broker's files from it.
Apply = Callable[[Connection], None]

# Any constant works; every process that changes MQTT accounts must use the same one.
_LOCK_KEY = 0x10C5_3A77


@dataclass(frozen=True, slots=True)
class MqttAccount:
    id: int
    username: str
    role: str
    owner: str | None  # the API user of a developer account; None for service accounts
    created_at: datetime
    revoked_at: datetime | None
    password_hash: str = ""
    label: str | None = None  # a developer's name for it, as given


_SELECT = """SELECT m.id, m.username, m.role, u.name, m.created_at, m.revoked_at, m.password_hash, m.label
             FROM mqtt_accounts m LEFT JOIN api_users u ON u.id = m.user_id"""


def _account(row: tuple[Any, ...]) -> MqttAccount:
    return MqttAccount(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


def new_password() -> str:
    """32 URL-safe random characters (192 bits): typed into a client's settings, never remembered."""
    return secrets.token_urlsafe(24)


def _lock(conn: Connection) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def find_account(conn: Connection, username: str) -> MqttAccount | None:
    row = conn.execute(_SELECT + " WHERE m.username = %s", (username,)).fetchone()
    return _account(row) if row else None


def list_accounts(conn: Connection, *, owner: str | None = None, include_revoked: bool = False) -> list[MqttAccount]:
    rows = conn.execute(
        _SELECT + """ WHERE (%(owner)s::text IS NULL OR u.name = %(owner)s)
                        AND (%(all)s OR m.revoked_at IS NULL)
                      ORDER BY m.username""",
        {"owner": owner, "all": include_revoked},
    ).fetchall()
    return [_account(r) for r in rows]


def broker_users(conn: Connection) -> list[BrokerUser]:
    """Every account the broker should accept, with its ACL lines: not revoked, and for developers, an API
    user who is not revoked either (revoking a developer's key closes their broker access at the next write)."""
    rows = conn.execute(
        """SELECT m.username, m.role, m.password_hash FROM mqtt_accounts m
           LEFT JOIN api_users u ON u.id = m.user_id
           WHERE m.revoked_at IS NULL AND (m.user_id IS NULL OR u.revoked_at IS NULL)
           ORDER BY m.username"""
    ).fetchall()
    return [BrokerUser(name, password_hash, GRANTS[role], ROLE_PLACE[role]) for name, role, password_hash in rows]


def apply_current(conn: Connection, apply: Apply) -> None:
    """Write the broker's files from the accounts as they are, in turn with any change being made."""
    with conn.transaction():
        _lock(conn)
        apply(conn)


def create_developer_account(
    conn: Connection, owner: str, *, label: str | None, limit: int, actor: str, apply: Apply
) -> tuple[MqttAccount, str]:
    """A new account for developer ``owner``, named ``dev-<user id>-<owner>-<label's slug or 4 hex digits>``;
    the label is kept as given. The password is returned once and only its hash is stored."""
    slug = label_slug(label) if label is not None else ""
    if label is not None and not slug:
        raise Invalid("a label needs at least one letter or digit", field="label")
    password = new_password()
    with conn.transaction():
        _lock(conn)
        row = conn.execute(
            "SELECT id, role FROM api_users WHERE name = %s AND revoked_at IS NULL", (owner,)
        ).fetchone()
        if row is None:
            raise NotFound(f"user {owner!r} does not exist")
        user_id = row[0]
        count_row = conn.execute(
            "SELECT count(*) FROM mqtt_accounts WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
        ).fetchone()
        assert count_row is not None
        if count_row[0] >= limit:
            raise Conflict(f"you hold {count_row[0]} active MQTT credentials, the most allowed; revoke one first")
        # A random suffix may meet an earlier account of the same developer (revoked ones keep their names).
        for _attempt in range(1 if label else 8):
            username = developer_username(user_id, owner, slug or secrets.token_hex(2))
            try:
                with database_errors("create the MQTT account"), conn.transaction():
                    conn.execute(
                        """INSERT INTO mqtt_accounts (username, role, user_id, password_hash, label)
                           VALUES (%s, 'developer', %s, %s, %s)""",
                        (username, user_id, hash_password(password), label),
                    )
                break
            except DuplicateKey:
                continue
        else:
            # Only this developer's own accounts can hold the name (the user id is in it).
            what = (f"the label {label!r} gives the username {username!r}, which you already have (or had); "
                    "revoked names stay taken") if label else "no free name was found"
            raise AlreadyExists(f"cannot create the MQTT credentials: {what}", field="label" if label else None)
        audit(conn, actor, "create", "mqtt_account", username,
              {"owner": owner, "role": "developer", "label": label, "password": "***"})
        apply(conn)
        account = find_account(conn, username)
    assert account is not None
    return account, password


def revoke_account(conn: Connection, username: str, *, actor: str, apply: Apply) -> MqttAccount:
    """Revoke a developer account. Revoking one already revoked changes nothing but writes the files again,
    so repeating a revocation whose reload failed is the way to retry it."""
    with conn.transaction():
        _lock(conn)
        account = find_account(conn, username)
        if account is None:
            raise NotFound(f"MQTT account {username!r} does not exist")
        if account.role != "developer":
            raise Conflict(f"{username!r} is a service account; give it a new password with "
                           f"`ioc broker rotate {username}` instead")
        if account.revoked_at is None:
            conn.execute("UPDATE mqtt_accounts SET revoked_at = now() WHERE id = %s", (account.id,))
            audit(conn, actor, "revoke", "mqtt_account", username, {"owner": account.owner})
        apply(conn)
        revoked = find_account(conn, username)
    assert revoked is not None
    return revoked


def ensure_service_accounts(conn: Connection, *, actor: str, apply: Apply) -> dict[str, str]:
    """Create the service accounts that do not exist yet; their passwords (shown once), by username."""
    created: dict[str, str] = {}
    with conn.transaction():
        _lock(conn)
        for username, role in SERVICE_ACCOUNTS.items():
            if find_account(conn, username) is not None:
                continue
            password = new_password()
            conn.execute(
                "INSERT INTO mqtt_accounts (username, role, password_hash) VALUES (%s, %s, %s)",
                (username, role, hash_password(password)),
            )
            audit(conn, actor, "create", "mqtt_account", username, {"role": role, "password": "***"})
            created[username] = password
        apply(conn)
    return created


def rotate_service_account(conn: Connection, username: str, *, actor: str, apply: Apply) -> str:
    """A new password for a service account (also bringing a revoked one back); returned once."""
    role: MqttRole | None = SERVICE_ACCOUNTS.get(username)
    if role is None:
        raise NotFound(f"{username!r} is not a service account; those are {', '.join(SERVICE_ACCOUNTS)}")
    password = new_password()
    with conn.transaction():
        _lock(conn)
        conn.execute(
            """INSERT INTO mqtt_accounts (username, role, password_hash) VALUES (%s, %s, %s)
               ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, revoked_at = NULL""",
            (username, role, hash_password(password)),
        )
        audit(conn, actor, "rotate", "mqtt_account", username, {"role": role, "password": "***"})
        apply(conn)
    return password
