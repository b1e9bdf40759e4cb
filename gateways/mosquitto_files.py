"""The Mosquitto adapter for its files: two brokers' mosquitto.conf, their password and ACL files, and reloads.

``ioc broker config --out DIR`` writes::

    DIR/internal/   mosquitto.conf  passwords  acl            ChirpStack and the ingest workers (application/#)
    DIR/public/     mosquitto.conf  services.passwords  services.acl       the feed publisher and the API
                                    developers.passwords  developers.acl   third-party developers (ioc/v1/#)

The public broker has one password file and ACL per listener (``per_listener_settings true``), so a developer
credential cannot log in on the service listener, and no developer is known to the internal broker at all.

Mosquitto 2.0 re-reads its password and ACL files on SIGHUP without dropping clients; a connected client
whose account is no longer in the password file is disconnected at that reload.

One module (~440 lines) for the two brokers' files because they are written together and must agree (a
listener's password file and its ACL, the service accounts of both brokers): one place to read them side by
side. Starting Mosquitto is ``gateways.local_mosquitto``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ioc_core.errors import FatalError
from ioc_core.mqtt_access import USERNAME_PATTERN, Grant, Place

__all__ = [
    "ACL_FILE",
    "CONF_FILE",
    "INTERNAL",
    "INTERNAL_MESSAGE_BYTES",
    "PASSWORD_FILE",
    "PBKDF2_ITERATIONS",
    "PID_FILE",
    "PUBLIC",
    "BrokerConfig",
    "BrokerFilesError",
    "BrokerReloadFailed",
    "BrokerUser",
    "Listener",
    "PublicLimits",
    "TlsFiles",
    "access_file_names",
    "hash_password",
    "pid_file",
    "reload",
    "render_acl",
    "render_internal_conf",
    "render_passwords",
    "render_public_conf",
    "verify_password",
    "write_access_files",
    "write_atomic",
    "write_config",
]

CONF_FILE = "mosquitto.conf"
PASSWORD_FILE = "passwords"
ACL_FILE = "acl"
PID_FILE = "mosquitto.pid"
INTERNAL = "internal"  # the folder of the internal broker inside the config folder
PUBLIC = "public"  # the folder of the public broker
_PLACE_FILES: dict[Place, tuple[str, str, str]] = {  # folder, password file, ACL file
    "internal": (INTERNAL, PASSWORD_FILE, ACL_FILE),
    "service": (PUBLIC, "services.passwords", "services.acl"),
    "developer": (PUBLIC, "developers.passwords", "developers.acl"),
}

# mosquitto_passwd's default in 2.0. The platform's passwords are 32 random characters, so stretching adds
# no safety, while the broker pays for every iteration on every CONNECT.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12  # what mosquitto_passwd uses
_HASH = re.compile(r"^\$7\$(\d{1,9})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
# A topic filter in an ACL line: no white space (the file is line- and word-based) and no NUL.
_TOPIC = re.compile(r"^[^\s\x00]{1,512}$")


class BrokerFilesError(FatalError):
    """The broker's files cannot be written (or hold something that cannot be written safely)."""


class BrokerReloadFailed(FatalError):
    """The broker could not be told to reload: no pid file, a stale one, or no permission to signal."""


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """An account as the broker's files know it: a name, Mosquitto's password hash, its ACL lines, and the
    broker and listener it may log in on."""

    username: str
    password_hash: str
    grants: tuple[Grant, ...]
    place: Place = "developer"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A TLS listener's server certificate and key (PEM), and ``cafile`` for the chain."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None


@dataclass(frozen=True, slots=True)
class Listener:
    """One listener: a port, the address it binds (None: every interface), TLS when given."""

    port: int
    host: str | None = "127.0.0.1"
    tls: TlsFiles | None = None


# The largest event ChirpStack v4 publishes is an uplink heard by many gateways: about 0.6 KiB of rxInfo per
# gateway (ids, time, RSSI/SNR, channel, location, context, metadata), up to 242 bytes of FRMPayload (324 in
# base64), ChirpStack's decoded object and the device's tags. 64 gateways come to about 48 KiB. The broker's
# limit sits well above the ingest's own (which dead-letters an oversized event and keeps its first bytes),
# so a faulty network server's oversized events reach the ingest and leave a trace; only absurd ones (a
# 200 MiB "uplink") are refused by the broker before they take its memory.
INTERNAL_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PublicLimits:
    """What one developer can make the public broker hold: every number is per client or per listener."""

    session_expiry_hours: int = 1  # Mosquitto caps MQTT 5 session expiry and 3.1.1 persistent sessions by it
    queued_messages: int = 1000  # QoS 1 messages queued per client (offline or slow)
    queued_bytes: int = 1024 * 1024  # and their bytes
    message_bytes: int = 64 * 1024  # the feed's packs are about 1 KiB; zone summaries a few
    packet_bytes: int = 256 * 1024  # any packet a client sends (a giant SUBSCRIBE or CONNECT disconnects it)
    connections: int = 1000  # per developer listener
    memory_mb: int = 1024  # the broker's heap, a last line of defence


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """What the two ``mosquitto.conf`` files say. ``directory`` holds ``internal/`` and ``public/``."""

    directory: Path
    internal: Listener = Listener(1883)
    service: Listener = Listener(1885)  # the public broker's listener for the feed publisher and the API
    developers: tuple[Listener, ...] = (Listener(1884),)
    limits: PublicLimits = field(default_factory=PublicLimits)
    internal_message_bytes: int = INTERNAL_MESSAGE_BYTES
    run_as: str | None = None  # the account Mosquitto drops to when started as root (its default: mosquitto)
    max_queued_messages: int = 5_000_000  # the internal broker: a stopped worker's backlog

    def folder(self, broker: str) -> Path:
        return self.directory / broker


def pid_file(directory: Path, broker: str) -> Path:
    """Where the broker ``broker`` (internal or public) of a config folder writes its pid."""
    return directory / broker / PID_FILE


def access_file_names(place: Place) -> tuple[str, str, str]:
    """The folder, password file and ACL file of the accounts of ``place``."""
    return _PLACE_FILES[place]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """Mosquitto 2.0's password hash: ``$7$<iterations>$<salt>$<hash>``, PBKDF2-HMAC-SHA512, base64 parts."""
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash, as Mosquitto checks it (False for anything malformed)."""
    match = _HASH.match(password_hash)
    if match is None:
        return False
    try:
        salt = base64.b64decode(match[2], validate=True)
        expected = base64.b64decode(match[3], validate=True)
    except binascii.Error:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(match[1]))
    return hmac.compare_digest(digest, expected)


def _checked(users: Iterable[BrokerUser]) -> list[BrokerUser]:
    """Refuse anything that could break a line of the files or smuggle in another one."""
    out = []
    seen: set[str] = set()
    for user in users:
        if not USERNAME_PATTERN.match(user.username):
            raise BrokerFilesError(f"MQTT username {user.username!r} cannot go into the broker's files")
        if user.username in seen:
            raise BrokerFilesError(f"MQTT username {user.username!r} appears twice")
        if not _HASH.match(user.password_hash):
            raise BrokerFilesError(f"the password hash of {user.username!r} is not a Mosquitto $7$ hash")
        for grant in user.grants:
            if not _TOPIC.match(grant.topic):
                raise BrokerFilesError(f"topic filter {grant.topic!r} of {user.username!r} cannot go into the ACL")
        seen.add(user.username)
        out.append(user)
    return out


def render_passwords(users: Iterable[BrokerUser]) -> str:
    """The password file: one ``username:hash`` line per account."""
    return "".join(f"{u.username}:{u.password_hash}\n" for u in _checked(users))


def render_acl(users: Iterable[BrokerUser]) -> str:
    """The ACL file: a ``user`` block per account. Nothing precedes the first block, so anonymous gets nothing."""
    lines = ["# Written by the IOC platform from its database; edits here are overwritten.", ""]
    for user in _checked(users):
        lines.append(f"user {user.username}")
        lines.extend(f"topic {grant.access} {grant.topic}" for grant in user.grants)
        lines.append("")
    return "\n".join(lines)


def _head(config: BrokerConfig, folder: Path) -> list[str]:
    lines = ["# Written by `ioc broker config`; write it again rather than editing it.", "",
             f"pid_file {folder / PID_FILE}"]
    if config.run_as:
        lines.append(f"user {config.run_as}")
    return lines


def _listener(listener: Listener) -> list[str]:
    lines = [f"listener {listener.port}" + (f" {listener.host}" if listener.host else "")]
    if listener.tls is not None:
        lines += [f"certfile {listener.tls.certfile.absolute()}", f"keyfile {listener.tls.keyfile.absolute()}"]
        if listener.tls.cafile is not None:
            lines.append(f"cafile {listener.tls.cafile.absolute()}")
        lines.append("tls_version tlsv1.2")
    return lines


def _checked_lines(lines: list[str]) -> str:
    for line in lines:
        if "\n" in line or "\x00" in line:
            raise BrokerFilesError(f"a configuration value holds a line break: {line!r}")
    return "\n".join(lines) + "\n"


def render_internal_conf(config: BrokerConfig) -> str:
    """The internal broker: ChirpStack and the ingest workers only, on a private address."""
    folder = config.folder(INTERNAL).absolute()
    lines = [
        *_head(config, folder),
        "",
        "# Service accounts only (chirpstack, ioc-ingest): no developer is in these files, so no developer",
        "# credential can subscribe to application/#, join the ingest's shared subscription or take a",
        "# service's client id here.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {folder / PASSWORD_FILE}",
        f"acl_file {folder / ACL_FILE}",
        "",
        *_listener(config.internal),
        "",
        "# Sessions and queued QoS 1 messages survive a broker restart.",
        "persistence true",
        f"persistence_location {folder / 'data'}/",
        "autosave_interval 60",
        "# A worker down for an hour at 1,000 uplinks/s leaves 3.6 M messages queued for its session; the",
        "# default of 1000 would silently drop all but the first thousand.",
        f"max_queued_messages {config.max_queued_messages}",
        "max_queued_bytes 0",
        "# MQTT 5 clients announce their own Receive Maximum; this limit applies to MQTT 3.1.1 clients only.",
        "max_inflight_messages 1000",
        "# ChirpStack's largest real event is about 48 KiB (an uplink heard by 64 gateways); the ingest",
        "# dead-letters anything above its own limit, so this only stops absurd messages taking the memory.",
        "# (message_size_limit, not max_packet_size: a publisher is not disconnected and made to resend.)",
        f"message_size_limit {config.internal_message_bytes}",
        "",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    return _checked_lines(lines)


def render_public_conf(config: BrokerConfig) -> str:
    """The public broker: the open feed for developers; every number that a client could grow is bounded."""
    folder = config.folder(PUBLIC).absolute()
    limits = config.limits
    lines = [
        *_head(config, folder),
        "",
        "# Each listener has its own password file and ACL: developers cannot log in on the service listener.",
        "per_listener_settings true",
        "",
        "# The feed publisher (ioc-feed, one connection per ingest worker) and the API (ioc-api), privately.",
        *_listener(config.service),
        "allow_anonymous false",
        f"password_file {folder / _PLACE_FILES['service'][1]}",
        f"acl_file {folder / _PLACE_FILES['service'][2]}",
    ]
    for listener in config.developers:
        lines += [
            "",
            "# Third-party developers: read ioc/v1/# only. The client id is the username, so a credential holds",
            "# one connection and one session, and nobody can take another's.",
            *_listener(listener),
            "allow_anonymous false",
            "use_username_as_clientid true",
            f"max_connections {limits.connections}",
            f"password_file {folder / _PLACE_FILES['developer'][1]}",
            f"acl_file {folder / _PLACE_FILES['developer'][2]}",
        ]
    lines += [
        "",
        "persistence true",
        f"persistence_location {folder / 'data'}/",
        "autosave_interval 60",
        "# A parked session lives at most this long (MQTT 5 session expiry above it is cut to it).",
        f"persistent_client_expiration {limits.session_expiry_hours}h",
        "# Per client: what an offline or slow subscriber may have queued.",
        f"max_queued_messages {limits.queued_messages}",
        f"max_queued_bytes {limits.queued_bytes}",
        "max_inflight_messages 100",
        f"message_size_limit {limits.message_bytes}",
        f"max_packet_size {limits.packet_bytes}",
        "max_keepalive 300",
        f"memory_limit {limits.memory_mb * 1024 * 1024}",
        "",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    return _checked_lines(lines)


def write_atomic(path: Path, text: str, *, mode: int) -> None:
    """Replace ``path`` in one step (temporary file, fsync, rename), so the broker never reads half a file.

    The group of a file being replaced is kept, so a file an operator gave to the broker's group stays
    readable by the broker.
    """
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise BrokerFilesError(f"cannot write into {path.parent}: {err.strerror or err}") from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chown(tmp, -1, path.stat().st_gid)
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise BrokerFilesError(f"cannot write {path}: {err.strerror or err}") from err


def write_access_files(directory: Path, users: Iterable[BrokerUser]) -> list[Path]:
    """Write the password and ACL files of every broker folder that exists under ``directory``; the paths.

    Access needs an entry in both, so a reload between the two writes can only refuse, never grant,
    something the pair does not. A host that runs only one of the brokers has only its folder.
    """
    users = list(users)
    written: list[Path] = []
    for place, (folder, passwords_name, acl_name) in _PLACE_FILES.items():
        target = directory / folder
        if not target.is_dir():
            continue
        mine = [u for u in users if u.place == place]
        acl, passwords = render_acl(mine), render_passwords(mine)
        # 0640: the hashes are for the broker's group (give the folder to it, with the setgid bit), nobody else.
        write_atomic(target / acl_name, acl, mode=0o640)
        write_atomic(target / passwords_name, passwords, mode=0o640)
        written += [target / passwords_name, target / acl_name]
    if not written:
        raise BrokerFilesError(f"{directory} holds neither {INTERNAL}/ nor {PUBLIC}/: write it with "
                               f"`ioc broker config --out {directory}`")
    return written


def write_config(config: BrokerConfig, users: Iterable[BrokerUser]) -> list[Path]:
    """Write both brokers' mosquitto.conf, password and ACL files under ``config.directory``; the paths."""
    try:
        for broker in (INTERNAL, PUBLIC):
            (config.folder(broker) / "data").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BrokerFilesError(f"cannot create {config.directory}: {err.strerror or err}") from err
    internal, public = config.folder(INTERNAL) / CONF_FILE, config.folder(PUBLIC) / CONF_FILE
    write_atomic(internal, render_internal_conf(config), mode=0o644)
    write_atomic(public, render_public_conf(config), mode=0o644)
    return [internal, public, *write_access_files(config.directory, users)]


def reload(pid_file: Path) -> int:
    """Send SIGHUP to the broker named by ``pid_file``; its pid. Connected clients stay connected."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except FileNotFoundError as err:
        raise BrokerReloadFailed(
            f"{pid_file} does not exist: is mosquitto running with `pid_file {pid_file}`?"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise BrokerReloadFailed(f"cannot read {pid_file}: {err}") from err
    if not text.isdigit() or int(text) <= 1:
        raise BrokerReloadFailed(f"{pid_file} does not hold a process id: {text[:40]!r}")
    pid = int(text)
    # A stale pid file may name a process that is not the broker; SIGHUP would end most programs.
    comm = Path(f"/proc/{pid}/comm")
    if Path("/proc/self/comm").exists():  # Linux: the process's name can be checked
        try:
            name = comm.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            name = None
        except OSError:
            name = "mosquitto"  # cannot tell; let kill() decide
        if name is None:
            raise BrokerReloadFailed(f"{pid_file} is stale: no process {pid} (is mosquitto running?)")
        if name != "mosquitto":
            raise BrokerReloadFailed(f"{pid_file} is stale: process {pid} is {name!r}, not mosquitto")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as err:
        raise BrokerReloadFailed(f"{pid_file} is stale: no process {pid} (is mosquitto running?)") from err
    except PermissionError as err:
        raise BrokerReloadFailed(f"no permission to signal mosquitto (pid {pid}); run as its user") from err
    return pid
