"""Opening a connection that fails says which setting to fix."""

from __future__ import annotations

import socket
from typing import Any

import psycopg
import pytest
from psycopg import errors

from gateways.database import DatabaseRefused, DatabaseUnavailable, connect


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed at once: nothing listens there
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_database_names_the_setting() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"^cannot reach the database \(check IOC_DATABASE_URL\): "):
        connect(f"postgresql://ioc@127.0.0.1:{_closed_port()}/ioc")


@pytest.mark.parametrize(("state", "ours"), [("28P01", DatabaseRefused), ("28000", DatabaseRefused),
                                             ("3D000", DatabaseRefused), ("57P03", DatabaseUnavailable),
                                             ("53300", DatabaseUnavailable)])
def test_a_refusal_that_carries_its_sqlstate_is_sorted_by_it_in_any_language(
        monkeypatch: pytest.MonkeyPatch, state: str, ours: type[Exception]) -> None:
    # What connect() meets once psycopg passes on the server's SQLSTATE (psycopg issue #1188); the text here is a
    # server whose lc_messages is Vietnamese, which no message matching would understand.
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise errors.lookup(state)("kết nối tới máy chủ thất bại: FATAL:  xác thực không thành công")

    monkeypatch.setattr(psycopg, "connect", refuse)
    with pytest.raises(ours) as caught:
        connect("postgresql://ioc@127.0.0.1/ioc")
    assert caught.value.sqlstate == state  # type: ignore[attr-defined]
    assert isinstance(caught.value.__cause__, psycopg.Error)
