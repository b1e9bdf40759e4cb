"""The API's doors against a real PostgreSQL: health, keys, roles, and the JSON errors for each refusal."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc_api.queries.users import create_user

pytestmark = pytest.mark.integration


def _key(db_url: str, name: str, role: str, zones: list[str] | None = None) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return create_user(conn, name, role, zones or [], actor="test")[1].key


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_and_readiness(api_client: TestClient) -> None:
    assert api_client.get("/healthz").json() == {"status": "ok"}
    assert api_client.get("/readyz").json() == {"status": "ok"}
    assert api_client.get("/openapi.json").json()["info"]["title"] == "IOC platform API"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing API key"),
        ({"Authorization": "Bearer nonsense"}, "unknown API key"),
        ({"Authorization": "Bearer ioc_deadbeef_not-a-real-secret"}, "unknown API key"),
    ],
)
def test_missing_or_bad_keys_are_401(api_client: TestClient, headers: dict[str, str], message: str) -> None:
    response = api_client.get("/api/v1/users", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert message in response.json()["error"]["message"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_key_with_the_right_prefix_but_wrong_secret_is_401(api_client: TestClient, db_url: str) -> None:
    key = _key(db_url, "admin1", "admin")
    forged = key[: key.rindex("_") + 1] + "x" * 43
    assert api_client.get("/api/v1/users", headers=_auth(forged)).status_code == 401
    assert api_client.get("/api/v1/users", headers=_auth(key)).status_code == 200


def test_roles_other_than_admin_get_403(api_client: TestClient, db_url: str) -> None:
    for role in ("operator", "technician", "developer"):
        key = _key(db_url, f"user-{role}", role)
        response = api_client.get("/api/v1/users", headers=_auth(key))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden" and role in response.json()["error"]["message"]


def test_admin_manages_users_and_keys_are_shown_once(api_client: TestClient, db_url: str) -> None:
    admin = _auth(_key(db_url, "root", "admin"))
    created = api_client.post("/api/v1/users", headers=admin,
                          json={"name": "ops-hai-chau", "role": "operator", "zones": ["hai-chau"]})
    assert created.status_code == 201
    body = created.json()
    assert body["zones"] == ["hai-chau"] and body["key"].startswith("ioc_")
    listed = api_client.get("/api/v1/users", headers=admin).json()
    assert {u["name"] for u in listed} == {"root", "ops-hai-chau"}
    assert all("key" not in u for u in listed)
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT key_hash FROM api_users WHERE name = 'ops-hai-chau'").fetchone()
        assert stored is not None and body["key"].encode() not in bytes(stored[0])
        audit = conn.execute("SELECT actor, action, changes FROM audit_log WHERE entity_id = 'ops-hai-chau'").fetchone()
        assert audit is not None and audit[:2] == ("root", "create") and audit[2]["key"] == "***"
    duplicate = api_client.post("/api/v1/users", headers=admin, json={"name": "ops-hai-chau", "role": "operator"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["field"] == "name"
    # The new operator's key works until it is revoked.
    operator = _auth(body["key"])
    assert api_client.get("/api/v1/users", headers=operator).status_code == 403
    assert api_client.delete("/api/v1/users/ops-hai-chau", headers=admin).status_code == 200
    revoked = api_client.get("/api/v1/users", headers=operator)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    assert api_client.delete("/api/v1/users/nobody", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x y", "role": "admin"}, "name"),
        ({"name": "ok", "role": "emperor"}, "role"),
        ({"role": "admin"}, "name"),
    ],
)
def test_invalid_input_is_422_with_the_field(api_client: TestClient, db_url: str, payload: dict[str, str],
                                             field: str) -> None:
    admin = _auth(_key(db_url, "root2", "admin"))
    response = api_client.post("/api/v1/users", headers=admin, json=payload)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_unknown_zone_is_404_with_the_field(api_client: TestClient, db_url: str) -> None:
    admin = _auth(_key(db_url, "root3", "admin"))
    response = api_client.post("/api/v1/users", headers=admin, json={"name": "t1", "role": "technician",
                                                                 "zones": ["atlantis"]})
    assert response.status_code == 404 and response.json()["error"]["field"] == "zones"
