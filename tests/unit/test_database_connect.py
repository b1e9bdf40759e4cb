"""Opening a connection that fails says which setting to fix."""

from __future__ import annotations

import socket

import pytest

from gateways.database import DatabaseUnavailable, connect


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed at once: nothing listens there
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_database_names_the_setting() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"^cannot reach the database \(check IOC_DATABASE_URL\): "):
        connect(f"postgresql://ioc@127.0.0.1:{_closed_port()}/ioc")
