"""The API for the tests: the app on a fresh database behind a TestClient, and an admin's headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api_support import app_for, key


@pytest.fixture
def api_client(db_url: str) -> Iterator[TestClient]:
    """The API on the test's database (``app_for``), started and stopped around the test."""
    with TestClient(app_for(db_url)) as client:
        yield client


@pytest.fixture
def admin(db_url: str) -> dict[str, str]:
    """Authorization headers of an admin, ``root``."""
    return key(db_url, "root", "admin")
