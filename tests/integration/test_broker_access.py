"""The brokers' doors, against real Mosquitto processes started with the configuration `ioc broker config` writes.

Developers reach only the public broker, read the open feed there and nothing else, publish nowhere, and
manage their own credentials through the API; a revocation reaches the broker through its files and a
SIGHUP, without dropping anyone else. No developer credential is known to the internal broker.

One module of ~480 lines: every door is tried against the same pair of running brokers.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateways.local_postgres import free_port
from gateways.mosquitto_files import BrokerReloadFailed, reload, verify_password
from ioc_cli.app import build_app
from ioc_core.errors import FatalError
from ioc_core.settings import BrokerSettings
from tests.api_support import app_for, key
from tests.availability import unavailable
from tests.broker_support import (
    NOT_AUTHORIZED,
    READING_TOPIC,
    PlatformBroker,
    Probe,
    accepted_soon,
    broker_config,
    developer,
    refused_soon,
    start_brokers,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(db_url: str, tmp_path: Path) -> Iterator[PlatformBroker]:
    broker = start_brokers(db_url, tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


# --- the broker alone -------------------------------------------------------------------------------------------


def test_developer_reads_the_open_feed_and_nothing_else(db_url: str, platform: PlatformBroker) -> None:
    username, password = developer(db_url, platform, "alice")
    ingest, chirpstack = platform.service("ioc-ingest"), platform.service("chirpstack")
    feed = platform.service("ioc-feed")
    dev = accepted_soon(platform, username, password)
    try:
        assert not ingest.subscribe("$share/ioc-ingest/application/+/device/+/event/+").is_failure
        assert not dev.subscribe("ioc/v1/#").is_failure
        # On the public broker there is no application/# traffic to see, whatever Mosquitto answers.
        dev.subscribe("application/#")
        dev.subscribe("$share/ioc-ingest/application/+/device/+/event/+")

        event = f"application/{uuid.uuid4()}/device/0000000000000001/event/up"
        assert not chirpstack.publish(event, b'{"fCnt": 1}').is_failure
        ingest.wait_for(event)
        assert not feed.publish(READING_TOPIC, b'{"value": 1.25}').is_failure
        dev.wait_for(READING_TOPIC)
        assert dev.messages == [(READING_TOPIC, b'{"value": 1.25}')]
        assert ingest.messages == [(event, b'{"fCnt": 1}')]  # the open feed never reaches the internal broker
    finally:
        for probe in (dev, ingest, chirpstack, feed):
            probe.close()


def test_developer_credentials_open_no_other_door(db_url: str, platform: PlatformBroker) -> None:
    """Not the internal broker (no developer is in its files), not the public broker's service listener."""
    username, password = developer(db_url, platform, "eve")
    accepted_soon(platform, username, password).close()
    assert refused_soon(platform, username, password, port=platform.internal_port)
    assert refused_soon(platform, username, password, port=platform.service_port)
    # Nor the other way round: a service account is not known on the developer listener.
    assert refused_soon(platform, "ioc-feed", platform.passwords["ioc-feed"], port=platform.public_port)
    assert refused_soon(platform, "ioc-ingest", platform.passwords["ioc-ingest"], port=platform.public_port)


def test_developers_publish_nowhere(db_url: str, platform: PlatformBroker) -> None:
    username, password = developer(db_url, platform, "mallory")
    ingest = platform.service("ioc-feed")
    dev = accepted_soon(platform, username, password)
    try:
        dev.subscribe("ioc/v1/#")  # would hear its own forgeries in the feed if they were accepted
        for topic in (READING_TOPIC, "ioc/v1/x", "application/x/device/0000000000000001/event/up", "ioc/x",
                      "other", "$SYS/broker/x"):
            reason = dev.publish(topic, b"forged")
            assert reason.value == NOT_AUTHORIZED, (topic, reason)
        assert not ingest.publish("ioc/v1/marker", b"after").is_failure
        dev.wait_for("ioc/v1/marker")
        assert dev.messages == [("ioc/v1/marker", b"after")]
    finally:
        dev.close()
        ingest.close()


@pytest.mark.parametrize(
    ("username", "password"),
    [("chirpstack", "wrong"), ("ioc-ingest", ""), ("nobody", "whatever"), (None, None)],
    ids=["wrong-password", "empty-password", "unknown-user", "anonymous"],
)
def test_bad_credentials_are_refused(platform: PlatformBroker, username: str | None, password: str | None) -> None:
    reason = platform.probe(username, password).connect()
    assert reason is not None and reason.value in (0x86, NOT_AUTHORIZED), reason


def test_a_developer_password_is_not_someone_elses(db_url: str, platform: PlatformBroker) -> None:
    alice, alice_password = developer(db_url, platform, "alice")
    bob, _bob_password = developer(db_url, platform, "bob")
    accepted_soon(platform, alice, alice_password).close()
    for username in (bob, "chirpstack", "ioc-ingest", "ioc-feed", "ioc-api"):
        assert refused_soon(platform, username, alice_password)


# --- through the API --------------------------------------------------------------------------------------------


def _name(db_url: str, user: str, suffix: str) -> str:
    """The MQTT username the API gives ``user``'s credentials with ``suffix``: the user id makes it unique."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT id FROM api_users WHERE name = %s", (user,)).fetchone()
    assert row is not None
    return f"dev-{row[0]}-{user}-{suffix}"


def _api(db_url: str, settings: BrokerSettings) -> TestClient:
    return TestClient(app_for(db_url, broker=settings))


def test_credentials_from_the_api_work_until_revoked(db_url: str, platform: PlatformBroker) -> None:
    alice, bob = key(db_url, "alice", "developer"), key(db_url, "bob", "developer")
    ingest = platform.service("ioc-feed")
    with _api(db_url, platform.settings()) as client:
        created = client.post("/api/v1/mqtt/credentials", headers=alice)
        assert created.status_code == 201, created.text
        body = created.json()
        assert re.fullmatch(_name(db_url, "alice", "") + "[0-9a-f]{4}", body["username"]), body["username"]
        assert body["owner"] == "alice" and body["role"] == "developer" and body["revoked_at"] is None
        assert body["broker_url"] == f"mqtt://127.0.0.1:{platform.public_port}" and body["topic_filter"] == "ioc/v1/#"
        assert body["broker"]["state"] == "reloaded"
        bob_body = client.post("/api/v1/mqtt/credentials", headers=bob, json={"label": "flood_app"}).json()
        assert bob_body["username"] == _name(db_url, "bob", "flood_app")

        alice_client = accepted_soon(platform, body["username"], body["password"])
        bob_client = accepted_soon(platform, bob_body["username"], bob_body["password"])
        alice_client.subscribe("ioc/v1/#")
        bob_client.subscribe("ioc/v1/#")
        ingest.publish(READING_TOPIC, b"1")
        alice_client.wait_for(READING_TOPIC)
        bob_client.wait_for(READING_TOPIC)

        revoked = client.delete(f"/api/v1/mqtt/credentials/{body['username']}", headers=alice)
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None and revoked.json()["broker"]["state"] == "reloaded"
        assert refused_soon(platform, body["username"], body["password"])
        # Mosquitto drops a connection whose account left the password file at the reload, and only that one.
        assert alice_client.dropped.wait(5)
        assert not bob_client.dropped.is_set()
        ingest.publish("ioc/v1/hai-chau/water_level/0000000000000002", b"2")
        bob_client.wait_for("ioc/v1/hai-chau/water_level/0000000000000002")
        assert not bob_client.dropped.is_set()
        for probe in (alice_client, bob_client, ingest):
            probe.close()

        again = client.delete(f"/api/v1/mqtt/credentials/{body['username']}", headers=alice)
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]

    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT password_hash FROM mqtt_accounts WHERE username = %s",
                              (body["username"],)).fetchone()
        assert stored is not None and verify_password(body["password"], stored[0])
        records = conn.execute("SELECT actor, action, changes::text FROM audit_log WHERE entity = 'mqtt_account' "
                               "AND entity_id = %s ORDER BY id", (body["username"],)).fetchall()
    assert [(actor, action) for actor, action, _ in records] == [("alice", "create"), ("alice", "revoke")]
    assert '"password": "***"' in records[0][2]
    assert not any(body["password"] in changes for *_, changes in records)


def test_developers_see_only_their_own_and_admins_see_all(db_url: str, tmp_path: Path) -> None:
    alice, bob = key(db_url, "alice", "developer"), key(db_url, "bob", "developer")
    admin = key(db_url, "root", "admin")
    settings = BrokerSettings(config_dir=tmp_path, pid_file=None)
    (tmp_path / "public").mkdir()
    a1, b1 = _name(db_url, "alice", "a1"), _name(db_url, "bob", "b1")
    with _api(db_url, settings) as client:
        mine = client.post("/api/v1/mqtt/credentials", headers=alice, json={"label": "a1"})
        assert mine.status_code == 201 and mine.json()["broker"]["state"] == "files_written"
        theirs = client.post("/api/v1/mqtt/credentials", headers=bob, json={"label": "b1"}).json()["username"]
        acl = (tmp_path / "public" / "developers.acl").read_text()
        assert f"user {a1}\ntopic read ioc/v1/#" in acl and f"user {b1}\ntopic read ioc/v1/#" in acl

        listed = client.get("/api/v1/mqtt/credentials", headers=alice).json()
        assert [c["username"] for c in listed] == [a1]
        assert all("password" not in c and "password_hash" not in c for c in listed)
        assert client.get("/api/v1/mqtt/credentials?user=alice", headers=alice).status_code == 200
        assert client.get("/api/v1/mqtt/credentials?user=bob", headers=alice).status_code == 403
        assert client.delete(f"/api/v1/mqtt/credentials/{theirs}", headers=alice).status_code == 403
        assert client.delete("/api/v1/mqtt/credentials/dev-nobody-0000", headers=alice).status_code == 404

        everyone = client.get("/api/v1/mqtt/credentials", headers=admin).json()
        assert [c["username"] for c in everyone] == [a1, b1]
        assert [c["owner"] for c in client.get("/api/v1/mqtt/credentials?user=bob", headers=admin).json()] == ["bob"]
        assert client.delete(f"/api/v1/mqtt/credentials/{theirs}", headers=admin).status_code == 200
        assert b1 not in (tmp_path / "public" / "developers.acl").read_text()
        assert b1 not in (tmp_path / "public" / "developers.passwords").read_text()
        assert [c["username"] for c in client.get("/api/v1/mqtt/credentials", headers=admin).json()] == [a1]
        with_revoked = client.get("/api/v1/mqtt/credentials?include_revoked=true", headers=admin).json()
        assert [c["username"] for c in with_revoked] == [a1, b1]

        assert client.post("/api/v1/mqtt/credentials", headers=admin).status_code == 403
        for role in ("operator", "technician"):
            other = key(db_url, f"a-{role}", role)
            assert client.get("/api/v1/mqtt/credentials", headers=other).status_code == 403
            assert client.post("/api/v1/mqtt/credentials", headers=other).status_code == 403
            assert client.delete(f"/api/v1/mqtt/credentials/{a1}", headers=other).status_code == 403
        assert client.get("/api/v1/mqtt/credentials").status_code == 401


def test_limits_and_labels(db_url: str) -> None:
    alice = key(db_url, "alice", "developer")
    with _api(db_url, BrokerSettings(config_dir=None, credentials_per_developer=3)) as client:
        made = [client.post("/api/v1/mqtt/credentials", headers=alice) for _ in range(3)]
        assert [r.status_code for r in made] == [201, 201, 201]
        assert {r.json()["broker"]["state"] for r in made} == {"not_managed"}
        over = client.post("/api/v1/mqtt/credentials", headers=alice)
        assert over.status_code == 409 and "revoke one first" in over.json()["error"]["message"]
        client.delete(f"/api/v1/mqtt/credentials/{made[0].json()['username']}", headers=alice)
        labelled = client.post("/api/v1/mqtt/credentials", headers=alice, json={"label": "app"})
        app = _name(db_url, "alice", "app")
        assert labelled.status_code == 201 and labelled.json()["username"] == app
        client.delete(f"/api/v1/mqtt/credentials/{app}", headers=alice)
        reused = client.post("/api/v1/mqtt/credentials", headers=alice, json={"label": "app"})
        assert reused.status_code == 409 and reused.json()["error"]["field"] == "label"
        for bad in ("", "x" * 65, "!!!", "漢字", "tab\there"):
            response = client.post("/api/v1/mqtt/credentials", headers=alice, json={"label": bad})
            assert response.status_code == 422 and response.json()["error"]["field"] == "label", bad


def test_the_documented_label_works(db_url: str) -> None:
    """docs/open-data.md creates credentials with ``{"label": "my flood app"}``: the label is kept as given
    and the username carries its slug; a developer whose name starts with ``dev-`` gets no second prefix."""
    anna = key(db_url, "dev-anna", "developer")
    with _api(db_url, BrokerSettings(config_dir=None)) as client:
        created = client.post("/api/v1/mqtt/credentials", headers=anna, json={"label": "my flood app"})
        assert created.status_code == 201, created.text
        body = created.json()
        user_id = _name(db_url, "dev-anna", "").split("-")[1]
        assert body["username"] == f"dev-{user_id}-anna-my_flood_app" and body["label"] == "my flood app"
        listed = client.get("/api/v1/mqtt/credentials", headers=anna).json()
        assert [(c["username"], c["label"]) for c in listed] == [(body["username"], "my flood app")]
        same_slug = client.post("/api/v1/mqtt/credentials", headers=anna, json={"label": "my_flood_app"})
        assert same_slug.status_code == 409 and body["username"] in same_slug.json()["error"]["message"]


def test_two_developers_names_never_collide(db_url: str) -> None:
    """``dev@x`` and ``dev_x`` used to both become ``dev-dev_x-<label>``: the second got a 409 naming the
    first developer's account. The user id in the name keeps them apart."""
    first, second = key(db_url, "dev@x", "developer"), key(db_url, "dev_x", "developer")
    with _api(db_url, BrokerSettings(config_dir=None)) as client:
        a = client.post("/api/v1/mqtt/credentials", headers=first, json={"label": "app"})
        b = client.post("/api/v1/mqtt/credentials", headers=second, json={"label": "app"})
        assert (a.status_code, b.status_code) == (201, 201), b.text
        assert a.json()["username"] != b.json()["username"]
        again = client.post("/api/v1/mqtt/credentials", headers=second, json={"label": "app"})
        assert again.status_code == 409 and a.json()["username"] not in again.text


def test_service_accounts_are_not_revoked_through_the_api(db_url: str, platform: PlatformBroker) -> None:
    admin = key(db_url, "root", "admin")
    with _api(db_url, platform.settings()) as client:
        listed = client.get("/api/v1/mqtt/credentials", headers=admin).json()
        assert [(c["username"], c["role"], c["owner"]) for c in listed] == [
            ("chirpstack", "chirpstack", None), ("ioc-api", "api", None), ("ioc-feed", "feed", None),
            ("ioc-ingest", "ingest", None)]
        refused = client.delete("/api/v1/mqtt/credentials/chirpstack", headers=admin)
        assert refused.status_code == 409 and "ioc broker rotate" in refused.json()["error"]["message"]
    platform.service("chirpstack").close()


def test_unwritable_files_change_nothing(db_url: str, tmp_path: Path) -> None:
    alice = key(db_url, "alice", "developer")
    directory = tmp_path / "broker"
    directory.mkdir()
    with _api(db_url, BrokerSettings(config_dir=directory)) as client:
        directory.rmdir()  # the folder goes away under the running API
        response = client.post("/api/v1/mqtt/credentials", headers=alice)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "broker_unavailable"
        assert "nothing changed" in response.json()["error"]["message"]
        assert client.get("/api/v1/mqtt/credentials", headers=alice).json() == []
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log WHERE entity = 'mqtt_account'").fetchone() == (0,)


def test_a_failed_reload_is_reported_and_repeating_the_revocation_retries_it(
    db_url: str, platform: PlatformBroker
) -> None:
    alice = key(db_url, "alice", "developer")
    with _api(db_url, platform.settings(pid_file=platform.directory / "missing.pid")) as client:
        created = client.post("/api/v1/mqtt/credentials", headers=alice).json()
        assert created["broker"]["state"] == "reload_failed"
        assert "missing.pid does not exist" in created["broker"]["detail"]
        assert "ioc broker reload" in created["broker"]["detail"]
        acl = (platform.directory / "public" / "developers.acl").read_text()
        assert f"user {created['username']}" in acl  # stored and written
    reload(platform.pid_file)  # what `ioc broker reload` does after the operator fixed the pid file
    probe = accepted_soon(platform, created["username"], created["password"])
    with _api(db_url, platform.settings()) as client:
        response = client.delete(f"/api/v1/mqtt/credentials/{created['username']}", headers=alice)
        assert response.json()["broker"]["state"] == "reloaded"
    assert probe.dropped.wait(5)
    probe.close()
    assert refused_soon(platform, created["username"], created["password"])


def test_reload_never_signals_a_process_that_is_not_the_broker(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = tmp_path / "mosquitto.pid"
        pid_file.write_text(f"{sleeper.pid}\n")
        with pytest.raises(BrokerReloadFailed, match="not mosquitto"):
            reload(pid_file)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# --- TLS ----------------------------------------------------------------------------------------------------------


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        unavailable("openssl not found")
    assert openssl is not None
    folder.mkdir()
    ca_key, ca, key_file, csr, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr",
                                                             "server.crt"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=IOC test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", str(key_file), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(extensions))
    return ca, cert, key_file


def test_developers_connect_over_tls(db_url: str, tmp_path: Path) -> None:
    ca, cert, key_file = _certificates(tmp_path / "tls")
    tls_port = free_port()
    broker = start_brokers(db_url, tmp_path, "--tls-port", str(tls_port), "--tls-cert", str(cert), "--tls-key",
                    str(key_file), "--tls-ca", str(ca))
    try:
        assert eventually(lambda: _listening(tls_port))
        username, password = developer(db_url, broker, "alice")
        accepted_soon(broker, username, password).close()  # the reload is done
        dev = Probe(tls_port, username, password, ca_file=ca)
        reason = dev.connect()
        assert reason is not None and not reason.is_failure, (reason, broker.public.log_tail())
        dev.subscribe("ioc/v1/#")
        ingest = broker.service("ioc-feed")  # inside, on the plain listener
        ingest.publish(READING_TOPIC, b"tls")
        dev.wait_for(READING_TOPIC)
        assert dev.publish("ioc/v1/x", b"forged").value == NOT_AUTHORIZED
        wrong = Probe(tls_port, username, "wrong", ca_file=ca).connect()
        assert wrong is not None and wrong.value == NOT_AUTHORIZED
        # Without TLS the TLS port gives no MQTT session, even with good credentials.
        assert Probe(tls_port, username, password).connect(timeout_s=2) is None
        dev.close()
        ingest.close()
    finally:
        broker.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --- the command line ---------------------------------------------------------------------------------------------


def test_config_again_keeps_accounts_and_rotate_and_reload_apply_at_once(
    db_url: str, platform: PlatformBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    again = broker_config(db_url, platform.directory, "--internal-port", str(platform.internal_port),
                          "--public-port", str(platform.public_port), "--service-port", str(platform.service_port))
    assert again.exit_code == 0, again.output
    assert again.stdout == ""  # no new accounts, so no passwords
    assert "mosquitto -c" in again.stderr and "IOC_BROKER_CONFIG_DIR=" in again.stderr

    env = {"IOC_DATABASE_URL": db_url, "IOC_BROKER_CONFIG_DIR": str(platform.directory),
           "IOC_BROKER_PID_FILE": str(platform.pid_file)}
    connected = platform.service("ioc-ingest")  # on the same (internal) broker as chirpstack
    rotated = CliRunner().invoke(build_app(), ["broker", "rotate", "chirpstack"], env=env)
    assert rotated.exit_code == 0, rotated.output
    new_password = rotated.stdout.strip()
    assert refused_soon(platform, "chirpstack", platform.passwords["chirpstack"])
    accepted_soon(platform, "chirpstack", new_password).close()
    assert not connected.dropped.is_set()
    connected.close()

    # Files edited by hand (or lost) come back from the database.
    (platform.directory / "internal" / "acl").write_text("")
    reloaded = CliRunner().invoke(build_app(), ["broker", "reload"], env=env)
    assert reloaded.exit_code == 0, reloaded.output
    assert "user chirpstack" in (platform.directory / "internal" / "acl").read_text()

    listed = CliRunner().invoke(build_app(), ["broker", "list"], env={**env, "COLUMNS": "200"})
    assert listed.exit_code == 0 and "chirpstack" in listed.stdout and "ioc-ingest" in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "/nonexistent.crt"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"], "--tls-cert: /nonexistent.crt is not"),
        (["--tls-ca", "/etc/hostname"], "--tls-ca needs --tls-cert"),
        (["--internal-host", "bad host"], "--internal-host must be an IP address"),
        (["--run-as", "Bad User"], "--run-as must be"),
    ],
)
def test_config_refuses_bad_options_in_one_line(db_url: str, tmp_path: Path, args: list[str], message: str) -> None:
    result = broker_config(db_url, tmp_path / "out", *args)
    assert isinstance(result.exception, FatalError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_reload_without_a_config_dir_is_a_clear_error(db_url: str) -> None:
    result = CliRunner().invoke(build_app(), ["broker", "reload"], env={"IOC_DATABASE_URL": db_url})
    assert isinstance(result.exception, FatalError)
    assert "IOC_BROKER_CONFIG_DIR is not set" in str(result.exception)


def test_help_texts() -> None:
    app = build_app()
    for command, words in ((["broker"], ("config", "reload", "rotate", "ioc/v1/#")),
                           (["broker", "config"], ("--out", "--tls-cert", "--internal-port", "passwords once"))):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        for word in words:
            assert word in result.output, (command, word)


def test_revoking_a_developer_closes_their_broker_accounts(db_url: str, platform: PlatformBroker) -> None:
    carol = key(db_url, "carol", "developer")
    admin = key(db_url, "root", "admin")
    with _api(db_url, platform.settings()) as client:
        body = client.post("/api/v1/mqtt/credentials", headers=carol).json()
        connected = accepted_soon(platform, body["username"], body["password"])
        assert client.delete("/api/v1/users/carol", headers=admin).status_code == 200
        assert connected.dropped.wait(5)
        assert refused_soon(platform, body["username"], body["password"])
        listed = client.get("/api/v1/mqtt/credentials", headers=admin, params={"user": "carol"}).json()
        connected.close()
    assert all(a["revoked_at"] is not None for a in (listed if isinstance(listed, list) else listed["items"]))
