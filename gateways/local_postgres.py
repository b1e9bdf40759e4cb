"""A throwaway PostgreSQL server run as a local process, for the demo and the test fixtures."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ioc_core.errors import FatalError

__all__ = [
    "LocalPostgres",
    "PostgresNotInstalled",
    "find_pg_bindir",
    "free_port",
    "make_reachable",
    "timescaledb_installed",
]


class PostgresNotInstalled(FatalError):
    """No PostgreSQL server binaries were found on this machine."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_reachable(folder: Path) -> None:
    """Let a dropped-privilege server user walk down to ``folder`` (mkdtemp makes 0700 folders)."""
    for parent in folder.parents:
        mode = os.stat(parent).st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o711)


def find_pg_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` live: ``IOC_PG_BINDIR``, Debian's versioned folders, or the PATH."""
    configured = os.environ.get("IOC_PG_BINDIR")
    candidates = [configured] if configured else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PostgresNotInstalled(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install them with "
        "`apt-get install postgresql` or set IOC_PG_BINDIR"
    )


def timescaledb_installed(bindir: Path | None = None) -> bool:
    """Whether the TimescaleDB library sits in this server's library folder (``pg_config --pkglibdir``)."""
    try:
        bindir = bindir or find_pg_bindir()
    except PostgresNotInstalled:
        return False
    libdir = bindir.parent / "lib"
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        done = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            libdir = Path(done.stdout.strip())
    return (libdir / "timescaledb.so").exists()


class LocalPostgres:
    """initdb + pg_ctl in a folder of our own, listening on loopback only.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user
    (Debian's package creates it) and the folder is handed to that user.

    ``timescaledb``: preload the TimescaleDB library (``shared_preload_libraries``), which ``CREATE EXTENSION``
    needs; None preloads it when it is installed, so the demo shows the mode a deployment would run.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database: str = "ioc",
        user: str = "ioc",
        durable: bool = True,
        bindir: Path | None = None,
        timescaledb: bool | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.database = database
        self.user = user
        self.durable = durable
        self.bindir = bindir or find_pg_bindir()
        self.timescaledb = timescaledb_installed(self.bindir) if timescaledb is None else timescaledb
        self._runas: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as err:
                raise PostgresNotInstalled("running as root needs the `postgres` system user") from err
            self._runas = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._runas:
            cmd = ["runuser", "-u", self._runas, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True)

    def _initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self._initialised():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._runas:
            shutil.chown(self.data_dir, self._runas, self._runas)
            make_reachable(self.data_dir)
        done = self._run(
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", check=False,
        )
        if done.returncode != 0:
            raise FatalError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        extra = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.data_dir}'",
            "max_connections = 50",
            "shared_buffers = 256MB",
            "max_wal_size = 2GB",
            "log_min_messages = warning",
        ]
        if not self.durable:
            # Test databases trade crash safety for speed; the demo and benchmarks keep the defaults.
            extra += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# added by the IOC platform\n" + "\n".join(extra) + "\n")

    def start(self, timeout_s: float = 30.0) -> None:
        self.init()
        options = f"-p {self.port}"
        if self.timescaledb:
            # Given at each start rather than written into postgresql.conf, so a folder made with TimescaleDB
            # still starts once it is gone. Telemetry would try to reach the internet from a server with none.
            options += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
            # TimescaleDB runs a scheduler per database plus a worker per running job, all drawn from
            # max_worker_processes (8 by default, which also serves parallel queries): with a few databases
            # its jobs "failed to start". Sized as timescaledb-tune would for this many background workers.
            options += " -c timescaledb.max_background_workers=16 -c max_worker_processes=27"
        done = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
            "-o", options, "-w", "-t", str(int(timeout_s)), "start", check=False,
        )
        if done.returncode != 0:
            log_tail = self.log_tail()
            raise FatalError(f"PostgreSQL did not start on port {self.port}: {done.stderr.strip()}\n{log_tail}")
        self._create_database()

    def _create_database(self) -> None:
        psql = str(self.bindir / "psql")
        exists = self._run(
            psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres", "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'", check=False,
        )
        if exists.stdout.strip() != "1":
            self._run(
                psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
                "-c", f'CREATE DATABASE "{self.database}"',
            )

    def stop(self, mode: str = "fast") -> None:
        if self._initialised():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def kill(self) -> None:
        """Stop the server the hard way, as a crash would."""
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        log_file = self.data_dir / "server.log"
        if not log_file.exists():
            return ""
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
