"""Fixtures for API tests: the app on a fresh database, and an admin's headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api_support import app_for, key


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(app_for(db_url)) as test_client:
        yield test_client


@pytest.fixture
def admin(db_url: str) -> dict[str, str]:
    return key(db_url, "root", "admin")
