"""A Mosquitto broker run as a local process, for the demo and the test fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from gateways.local_postgres import free_port
from ioc_core.errors import FatalError

__all__ = ["LocalMosquitto", "MosquittoNotInstalled", "find_mosquitto"]


class MosquittoNotInstalled(FatalError):
    """No mosquitto binary on this machine."""


def find_mosquitto() -> Path:
    found = os.environ.get("IOC_MOSQUITTO_BIN") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(found).exists():
        raise MosquittoNotInstalled(
            "mosquitto not found; install it with `apt-get install mosquitto` or set IOC_MOSQUITTO_BIN"
        )
    return Path(found)


class LocalMosquitto:
    """One broker on a loopback port with persistence, so sessions and queued messages survive restarts.

    ``max_queued_messages`` is raised well above Mosquitto's default of 1000 because a worker that is
    down for a while must find its backlog waiting, not silently dropped by the broker.

    With ``config_file`` (e.g. one ``ioc broker config`` wrote) the broker runs with that file instead, and
    ``port`` names the listener to wait for at start-up.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        port: int | None = None,
        max_queued: int = 2_000_000,
        config_file: Path | None = None,
    ) -> None:
        if config_file is not None and port is None:
            raise ValueError("a broker started with its own config_file needs the port it listens on")
        self.work_dir = work_dir
        self.port = port or free_port()
        self.max_queued = max_queued
        self.config_file = config_file
        self.binary = find_mosquitto()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "mosquitto.log"

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        data = self.work_dir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 30",
            f"max_queued_messages {self.max_queued}",
            "max_queued_bytes 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            # As root Mosquitto would drop to the `mosquitto` user, which cannot write into a root-owned
            # temporary folder; this broker listens on loopback only, for tests and the demo.
            lines.append("user root")
        conf = self.work_dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self, timeout_s: float = 10.0) -> None:
        if self.config_file is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            conf = self.config_file
        else:
            conf = self._write_config()
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child process
        # A session of its own: Ctrl-C in a terminal signals the whole foreground process group, and the broker
        # must outlive it until its owner has drained the clients and stops it (PostgreSQL's pg_ctl does the same).
        self._proc = subprocess.Popen([str(self.binary), "-c", str(conf)], stdout=log, stderr=log,
                                      start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise FatalError(f"mosquitto exited at start-up: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise FatalError(f"mosquitto did not listen on port {self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop cleanly: Mosquitto writes its persistence file on SIGTERM."""
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LocalMosquitto:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
