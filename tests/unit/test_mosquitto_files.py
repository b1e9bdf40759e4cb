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
    Listener,
    PublicLimits,
    TlsFiles,
    hash_password,
    reload,
    render_acl,
    render_internal_conf,
    render_passwords,
    render_public_conf,
    verify_password,
    write_access_files,
)
from ioc_core.mqtt_access import GRANTS, ROLE_PLACE, SERVICE_ACCOUNTS, Grant

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
        BrokerUser("chirpstack", hash_password("a"), GRANTS["chirpstack"], "internal"),
        BrokerUser("dev-1-alice-1a2b", hash_password("b"), GRANTS["developer"], "developer"),
        BrokerUser("ioc-ingest", hash_password("c"), GRANTS["ingest"], "internal"),
        BrokerUser("ioc-feed", hash_password("d"), GRANTS["feed"], "service"),
        BrokerUser("ioc-api", hash_password("e"), GRANTS["api"], "service"),
    ]


def test_acl_gives_each_account_its_own_block_and_anonymous_nothing() -> None:
    acl = render_acl(_users()[:3])
    body = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert body == [
        "user chirpstack",
        "topic write application/#",
        "topic read application/+/device/+/command/#",
        "user dev-1-alice-1a2b",
        "topic read ioc/v1/#",
        "user ioc-ingest",
        "topic read application/#",
    ]
    assert "pattern" not in acl  # a pattern line would apply to every account


def test_developers_read_the_open_feed_only() -> None:
    assert GRANTS["developer"] == (Grant("read", "ioc/v1/#"),)


def test_only_the_internal_brokers_accounts_touch_application_topics() -> None:
    for role, grants in GRANTS.items():
        touches = any(g.topic.startswith("application/") for g in grants)
        assert touches == (ROLE_PLACE[role] == "internal"), role
    assert GRANTS["api"] == ()  # the API only takes over sessions
    assert all(not name.startswith("dev-") for name in SERVICE_ACCOUNTS)


def test_password_file_has_one_line_per_account() -> None:
    users = _users()[:3]
    lines = render_passwords(users).splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["chirpstack", "dev-1-alice-1a2b", "ioc-ingest"]
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


def test_internal_conf_knows_only_the_service_accounts(tmp_path: Path) -> None:
    conf = render_internal_conf(BrokerConfig(tmp_path, internal=Listener(11883)))
    lines = conf.splitlines()
    folder = tmp_path / "internal"
    for expected in ("per_listener_settings false", "allow_anonymous false", f"password_file {folder}/passwords",
                     f"acl_file {folder}/acl", f"pid_file {folder}/mosquitto.pid", "listener 11883 127.0.0.1",
                     "persistence true", f"persistence_location {folder}/data/", "max_queued_messages 5000000",
                     "message_size_limit 1048576"):
        assert expected in lines
    assert [line for line in lines if line.startswith("listener")] == ["listener 11883 127.0.0.1"]
    assert "certfile" not in conf and not any(line.startswith("user ") for line in lines)
    assert "developers" not in conf and "use_username_as_clientid" not in conf


def _blocks(conf: str) -> list[list[str]]:
    """The lines of each listener block, up to the next blank line."""
    lines = conf.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.startswith("listener "):
            end = lines.index("", i) if "" in lines[i:] else len(lines)
            blocks.append(lines[i:end])
    return blocks


def test_public_conf_binds_client_ids_and_bounds_every_client(tmp_path: Path) -> None:
    tls = Listener(8883, None, TlsFiles(tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt"))
    config = BrokerConfig(tmp_path, service=Listener(1885, "10.0.0.5"), developers=(Listener(1884), tls),
                          limits=PublicLimits(session_expiry_hours=2, queued_messages=500, queued_bytes=65536,
                                              connections=50), run_as="root")
    conf = render_public_conf(config)
    lines = conf.splitlines()
    folder = tmp_path / "public"
    service, plain, secure = _blocks(conf)
    assert service[0] == "listener 1885 10.0.0.5"
    assert f"password_file {folder}/services.passwords" in service and "use_username_as_clientid true" not in service
    for block in (plain, secure):
        assert "use_username_as_clientid true" in block and "allow_anonymous false" in block
        assert "max_connections 50" in block and f"password_file {folder}/developers.passwords" in block
        assert f"acl_file {folder}/developers.acl" in block
    assert plain[0] == "listener 1884 127.0.0.1" and secure[0] == "listener 8883"
    assert secure[1:5] == [f"certfile {tmp_path}/server.crt", f"keyfile {tmp_path}/server.key",
                           f"cafile {tmp_path}/ca.crt", "tls_version tlsv1.2"]
    for expected in ("per_listener_settings true", "persistent_client_expiration 2h", "max_queued_messages 500",
                     "max_queued_bytes 65536", "message_size_limit 65536", "user root"):
        assert expected in lines, expected


def test_access_files_go_to_the_broker_and_listener_of_each_account(tmp_path: Path) -> None:
    (tmp_path / "internal").mkdir()
    (tmp_path / "public").mkdir()
    write_access_files(tmp_path, _users())
    write_access_files(tmp_path, _users())  # replaced whole
    internal, public = tmp_path / "internal", tmp_path / "public"
    assert sorted(p.name for p in internal.iterdir()) == ["acl", "passwords"]  # no temporary files left
    assert sorted(p.name for p in public.iterdir()) == ["developers.acl", "developers.passwords", "services.acl",
                                                         "services.passwords"]
    names = lambda path: [line.split(":")[0] for line in path.read_text().splitlines()]  # noqa: E731
    assert names(internal / "passwords") == ["chirpstack", "ioc-ingest"]
    assert names(public / "services.passwords") == ["ioc-feed", "ioc-api"]
    assert names(public / "developers.passwords") == ["dev-1-alice-1a2b"]
    for path in (*internal.iterdir(), *public.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_host_with_one_broker_gets_only_its_files(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    write_access_files(tmp_path, _users())
    assert not (tmp_path / "internal").exists()
    assert "chirpstack" not in (tmp_path / "public" / "services.passwords").read_text()


def test_writing_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerFilesError, match="holds neither internal/ nor public/"):
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
