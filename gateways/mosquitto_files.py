"""The Mosquitto adapter for its files: mosquitto.conf, the password file, the ACL file, and the reload signal.

Mosquitto 2.0 re-reads its password and ACL files on SIGHUP without dropping clients; a connected client
whose account is no longer in the password file is disconnected at that reload.
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
from dataclasses import dataclass
from pathlib import Path

from ioc_core.errors import FatalError
from ioc_core.mqtt_access import USERNAME_PATTERN, Grant

__all__ = [
    "ACL_FILE",
    "CONF_FILE",
    "PASSWORD_FILE",
    "PBKDF2_ITERATIONS",
    "PID_FILE",
    "BrokerConfig",
    "BrokerFilesError",
    "BrokerReloadFailed",
    "BrokerUser",
    "TlsListener",
    "hash_password",
    "reload",
    "render_acl",
    "render_conf",
    "render_passwords",
    "verify_password",
    "write_access_files",
    "write_atomic",
    "write_config",
]

CONF_FILE = "mosquitto.conf"
PASSWORD_FILE = "passwords"
ACL_FILE = "acl"
PID_FILE = "mosquitto.pid"

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
    """An account as the broker's files know it: a name, Mosquitto's password hash, and its ACL lines."""

    username: str
    password_hash: str
    grants: tuple[Grant, ...]


@dataclass(frozen=True, slots=True)
class TlsListener:
    """The listener for clients outside: TLS with the server's certificate (``cafile`` for client chains)."""

    port: int
    certfile: Path
    keyfile: Path
    cafile: Path | None = None
    bind: str | None = None  # None: every interface


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """What ``mosquitto.conf`` says. ``directory`` holds the password and ACL files and the pid file."""

    directory: Path
    internal_host: str = "127.0.0.1"
    internal_port: int = 1883
    tls: TlsListener | None = None
    data_dir: Path | None = None  # persistence; default <directory>/data
    run_as: str | None = None  # the account Mosquitto drops to when started as root (its default: mosquitto)
    max_queued_messages: int = 5_000_000

    @property
    def pid_file(self) -> Path:
        return self.directory / PID_FILE


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


def render_conf(config: BrokerConfig) -> str:
    """``mosquitto.conf``: a plain listener for the platform's services, TLS for everyone else when given."""
    directory = config.directory.absolute()
    data_dir = (config.data_dir or directory / "data").absolute()
    lines = [
        "# Written by `ioc broker config`; write it again rather than editing it.",
        "",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {directory / PASSWORD_FILE}",
        f"acl_file {directory / ACL_FILE}",
        f"pid_file {directory / PID_FILE}",
    ]
    if config.run_as:
        lines.append(f"user {config.run_as}")
    lines += [
        "",
        "# The platform's own services (ChirpStack, ingest workers), on a private address.",
        f"listener {config.internal_port} {config.internal_host}",
    ]
    if config.tls is not None:
        tls = config.tls
        lines += [
            "",
            "# Everyone else (third-party developers): TLS only.",
            f"listener {tls.port}" + (f" {tls.bind}" if tls.bind else ""),
            f"certfile {tls.certfile.absolute()}",
            f"keyfile {tls.keyfile.absolute()}",
        ]
        if tls.cafile is not None:
            lines.append(f"cafile {tls.cafile.absolute()}")
        lines.append("tls_version tlsv1.2")
    lines += [
        "",
        "# Sessions and queued QoS 1 messages survive a broker restart.",
        "persistence true",
        f"persistence_location {data_dir}/",
        "autosave_interval 60",
        "# A worker down for an hour at 1,000 uplinks/s leaves 3.6 M messages queued for its session; the",
        "# default of 1000 would silently drop all but the first thousand.",
        f"max_queued_messages {config.max_queued_messages}",
        "max_queued_bytes 0",
        "# MQTT 5 clients announce their own Receive Maximum; this limit applies to MQTT 3.1.1 clients only.",
        "max_inflight_messages 1000",
        "",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "",
    ]
    for line in lines:
        if "\n" in line or "\x00" in line:
            raise BrokerFilesError(f"a configuration value holds a line break: {line!r}")
    return "\n".join(lines)


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


def write_access_files(directory: Path, users: Iterable[BrokerUser]) -> None:
    """Write the password and ACL files. Access needs an entry in both, so a reload between the two writes
    can only refuse, never grant, something the pair does not."""
    users = list(users)
    acl, passwords = render_acl(users), render_passwords(users)
    # 0640: the hashes are for the broker's group (give the folder to it, with the setgid bit), nobody else.
    write_atomic(directory / ACL_FILE, acl, mode=0o640)
    write_atomic(directory / PASSWORD_FILE, passwords, mode=0o640)


def write_config(config: BrokerConfig, users: Iterable[BrokerUser]) -> list[Path]:
    """Write mosquitto.conf, the password and the ACL file into ``config.directory``; the paths written."""
    try:
        config.directory.mkdir(parents=True, exist_ok=True)
        (config.data_dir or config.directory / "data").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BrokerFilesError(f"cannot create {config.directory}: {err.strerror or err}") from err
    write_atomic(config.directory / CONF_FILE, render_conf(config), mode=0o644)
    write_access_files(config.directory, users)
    return [config.directory / name for name in (CONF_FILE, PASSWORD_FILE, ACL_FILE)]


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
