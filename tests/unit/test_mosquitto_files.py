"""The broker's files as text: Mosquitto's password hash, the ACL of each kind of account, mosquitto.conf."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest

from gateways.mosquitto_files import (
    BrokerConfig,
    BrokerFilesError,
    BrokerReloadFailed,
    BrokerUser,
    TlsListener,
    hash_password,
    reload,
    render_acl,
    render_conf,
    render_passwords,
    verify_password,
    write_access_files,
)
from ioc_core.mqtt_access import GRANTS, Grant

# Written by `mosquitto_passwd -c -b passwords alice secret` (Mosquitto 2.0.11).
MOSQUITTO_PASSWD_LINE = (
    "alice:$7$101$v09NDVe2W27mu0u1$luKfmIlF+A2P4DdFWjUwC2r5IwnZpWm3GB8ls7YsT17TJ9r305/F2NCev945w9eBvH8e7XdcCreaMNp+"
    "CYR90Q=="
)


def test_hash_matches_mosquitto_passwd_byte_for_byte() -> None:
    _user, _, line_hash = MOSQUITTO_PASSWD_LINE.partition(":")
    salt = base64.b64decode(line_hash.split("$")[3])
    assert hash_password("secret", salt=salt) == line_hash
    assert verify_password("secret", line_hash)
    assert not verify_password("Secret", line_hash)


def test_hash_format_is_pbkdf2_sha512_with_a_fresh_salt() -> None:
    first, second = hash_password("p4ss"), hash_password("p4ss")
    assert first != second  # a new salt each time
    match = re.fullmatch(r"\$7\$101\$([A-Za-z0-9+/]{16})\$([A-Za-z0-9+/]{86}==)", first)
    assert match is not None
    salt = base64.b64decode(match[1])
    assert len(salt) == 12
    assert base64.b64decode(match[2]) == hashlib.pbkdf2_hmac("sha512", b"p4ss", salt, 101)
    assert verify_password("p4ss", first) and verify_password("p4ss", second)


@pytest.mark.parametrize("bad", ["", "plain", "$6$abc$def", "$7$101$***$***", "$7$x$YWJj$YWJj"])
def test_malformed_hashes_verify_nothing(bad: str) -> None:
    assert not verify_password("anything", bad)


def _users() -> list[BrokerUser]:
    return [
        BrokerUser("chirpstack", hash_password("a"), GRANTS["chirpstack"]),
        BrokerUser("dev-alice-1a2b", hash_password("b"), GRANTS["developer"]),
        BrokerUser("ioc-ingest", hash_password("c"), GRANTS["ingest"]),
    ]


def test_acl_gives_each_account_its_own_block_and_anonymous_nothing() -> None:
    acl = render_acl(_users())
    body = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert body == [
        "user chirpstack",
        "topic write application/#",
        "topic read application/+/device/+/command/#",
        "user dev-alice-1a2b",
        "topic read ioc/v1/#",
        "user ioc-ingest",
        "topic read application/#",
        "topic readwrite ioc/#",
    ]
    assert "pattern" not in acl  # a pattern line would apply to every account


def test_developers_read_the_open_feed_only() -> None:
    assert GRANTS["developer"] == (Grant("read", "ioc/v1/#"),)


def test_password_file_has_one_line_per_account() -> None:
    users = _users()
    lines = render_passwords(users).splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["chirpstack", "dev-alice-1a2b", "ioc-ingest"]
    assert verify_password("b", lines[1].split(":", 1)[1])


@pytest.mark.parametrize(
    "user",
    [
        BrokerUser("eve\nuser admin", hash_password("x"), ()),
        BrokerUser("eve:x", hash_password("x"), ()),
        BrokerUser("eve", "plain-password", ()),
        BrokerUser("eve", hash_password("x"), (Grant("read", "ioc/v1/#\ntopic write #"),)),
        BrokerUser("eve", hash_password("x"), (Grant("read", "a b"),)),
    ],
)
def test_nothing_can_smuggle_a_line_into_the_files(user: BrokerUser) -> None:
    with pytest.raises(BrokerFilesError):
        render_acl([user])
    with pytest.raises(BrokerFilesError):
        render_passwords([user])


def test_a_username_twice_is_refused() -> None:
    user = _users()[0]
    with pytest.raises(BrokerFilesError, match="twice"):
        render_acl([user, user])


def test_conf_without_tls_has_the_internal_listener_only(tmp_path: Path) -> None:
    conf = render_conf(BrokerConfig(tmp_path, internal_port=11883))
    lines = conf.splitlines()
    for expected in ("per_listener_settings false", "allow_anonymous false", f"password_file {tmp_path}/passwords",
                     f"acl_file {tmp_path}/acl", f"pid_file {tmp_path}/mosquitto.pid", "listener 11883 127.0.0.1",
                     "persistence true", f"persistence_location {tmp_path}/data/", "max_queued_messages 5000000"):
        assert expected in lines
    assert [line for line in lines if line.startswith("listener")] == ["listener 11883 127.0.0.1"]
    assert "certfile" not in conf and not any(line.startswith("user ") for line in lines)


def test_conf_with_tls_adds_a_tls_listener(tmp_path: Path) -> None:
    tls = TlsListener(8883, tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt")
    lines = render_conf(BrokerConfig(tmp_path, internal_host="10.0.0.5", tls=tls, run_as="root")).splitlines()
    assert [line for line in lines if line.startswith("listener")] == ["listener 1883 10.0.0.5", "listener 8883"]
    after = lines[lines.index("listener 8883") + 1:]
    assert after[:4] == [f"certfile {tmp_path}/server.crt", f"keyfile {tmp_path}/server.key",
                         f"cafile {tmp_path}/ca.crt", "tls_version tlsv1.2"]
    assert "user root" in lines


def test_access_files_are_replaced_whole_and_private(tmp_path: Path) -> None:
    write_access_files(tmp_path, _users())
    write_access_files(tmp_path, _users()[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "passwords"]  # no temporary files left
    assert (tmp_path / "passwords").read_text().startswith("chirpstack:$7$")
    assert "dev-alice" not in (tmp_path / "acl").read_text()
    for name in ("acl", "passwords"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640


def test_writing_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerFilesError, match="cannot write into"):
        write_access_files(tmp_path / "missing", _users())


def test_reload_without_a_pid_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(BrokerReloadFailed, match="does not exist: is mosquitto running"):
        reload(tmp_path / "mosquitto.pid")


@pytest.mark.parametrize("text", ["", "abc", "-5", "1"])
def test_reload_refuses_a_pid_file_without_a_process_id(tmp_path: Path, text: str) -> None:
    (tmp_path / "mosquitto.pid").write_text(text)
    with pytest.raises(BrokerReloadFailed, match="does not hold a process id"):
        reload(tmp_path / "mosquitto.pid")


def test_reload_with_a_stale_pid_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "mosquitto.pid").write_text(f"{2**30}\n")  # above any pid_max
    with pytest.raises(BrokerReloadFailed, match="stale: no process"):
        reload(tmp_path / "mosquitto.pid")


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs /proc to name a process")
def test_reload_never_signals_a_process_that_is_not_mosquitto(tmp_path: Path) -> None:
    (tmp_path / "mosquitto.pid").write_text(f"{os.getpid()}\n")  # SIGHUP would end this test run
    with pytest.raises(BrokerReloadFailed, match="not mosquitto"):
        reload(tmp_path / "mosquitto.pid")
