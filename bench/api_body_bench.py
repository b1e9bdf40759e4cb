"""API body benchmark: the server's memory (RSS) while it refuses large request bodies.

Issue 10 found that the API read and parsed whole bodies before it checked the key: three 500 MiB bodies
without a key took it to 4.5 GB. This starts the real `ioc api` in a subprocess (on a local PostgreSQL, as
bench/api_bench.py does), sends it large bodies from a few clients at once, samples the server's resident set
from /proc every 10 ms, and prints the resident set before, at the peak and after each case. The cases:

- no key, a JSON body declared with Content-Length, to POST /api/v1/devices;
- no key, the same body sent chunked (no length declared);
- an admin's key, a CSV declared with Content-Length, to POST /api/v1/devices:import (a limited route);
- an admin's key, the same CSV sent chunked.

    python bench/api_body_bench.py                     # 50 MiB bodies, 3 clients at once, 3 rounds
    python bench/api_body_bench.py --mib 200 --clients 3

To measure another checkout (the code before the fix), run the script with that checkout first on PYTHONPATH:
the server is started with this interpreter and inherits PYTHONPATH, e.g.

    git worktree add /tmp/base-api 47dd00b
    PYTHONPATH=/tmp/base-api python bench/api_body_bench.py

"Sent" is how much of each body the client got onto the wire before the server answered and closed: a server
that refuses before reading takes little more than the socket buffers hold.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psycopg
from api_bench import ApiServer, close_database, open_database  # bench/ is the script's folder, first on sys.path
from machine_info import host_line

import ioc_api
from gateways.local_postgres import LocalPostgres
from gateways.migrations import migrate
from ingest.registry import seed_zones
from ioc_api.queries.users import create_user
from ioc_core.zones import load_default_zones

MiB = 1024 * 1024
PIECE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    path: str
    content_type: str
    keyed: bool
    chunked: bool


CASES = (
    Case("no key, JSON, Content-Length", "/api/v1/devices", "application/json", keyed=False, chunked=False),
    Case("no key, JSON, chunked", "/api/v1/devices", "application/json", keyed=False, chunked=True),
    Case("admin key, CSV import, Content-Length", "/api/v1/devices:import", "text/csv", keyed=True, chunked=False),
    Case("admin key, CSV import, chunked", "/api/v1/devices:import", "text/csv", keyed=True, chunked=True),
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Sampler:
    """The server's resident set every ``interval_s``, and its peak since the last ``reset``."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, rss_mib(self.pid))
            self._stop.wait(self.interval_s)

    def reset(self) -> float:
        now = rss_mib(self.pid)
        self.peak = now
        return now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def body_pieces(case: Case, size: int) -> Iterator[bytes]:
    """``size`` bytes of a body the route would take if it read it: one JSON string, or CSV rows."""
    if case.content_type == "application/json":
        head, tail = b'{"dev_eui": "a84041000181c9a1", "name": "', b'"}'
        filler = b"x" * PIECE
    else:
        head, tail = b"dev_eui,name,kind,model,latitude,longitude\n", b""
        row = b"a84041000181c9a1,Bin,waste_bin,ioc-wb100,16.0614,108.2275\n"
        filler = row * (PIECE // len(row)) + b"x" * (PIECE % len(row))
    yield head
    left = size - len(head) - len(tail)
    while left > 0:
        piece = filler[:left]
        yield piece
        left -= len(piece)
    yield tail


@dataclass
class Outcome:
    status: str = "?"
    sent: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def send_one(port: int, case: Case, size: int, key: str) -> Outcome:
    """One request on a raw socket: the body is written by a thread while this one waits for the answer."""
    outcome = Outcome()
    began = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    lines = [f"POST {case.path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {case.content_type}",
             "Connection: close"]
    if case.keyed:
        lines.append(f"Authorization: Bearer {key}")
    lines.append("Transfer-Encoding: chunked" if case.chunked else f"Content-Length: {size}")

    def write() -> None:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            for piece in body_pieces(case, size):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if case.chunked else piece)
                outcome.sent += len(piece)
            if case.chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError as err:  # the server answered and closed: the rest of the body is not wanted
            outcome.errors.append(type(err).__name__)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    answer = b""
    try:
        while b"\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except OSError as err:
        outcome.errors.append(f"read {type(err).__name__}")
    outcome.status = answer.split(b"\r\n", 1)[0].split(b" ")[1].decode() if answer.startswith(b"HTTP/") else "reset"
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    writer.join(60)
    outcome.seconds = time.monotonic() - began
    return outcome


def run_case(port: int, sampler: Sampler, case: Case, size: int, clients: int, rounds: int, key: str) -> None:
    settle()
    before = sampler.reset()
    outcomes: list[Outcome] = []
    began = time.monotonic()
    for _ in range(rounds):
        threads = [threading.Thread(target=lambda: outcomes.append(send_one(port, case, size, key)))
                   for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    elapsed = time.monotonic() - began
    peak = sampler.peak
    settle()
    after = rss_mib(sampler.pid)
    statuses = ",".join(sorted({o.status for o in outcomes}))
    sent = max(o.sent for o in outcomes) / MiB
    print(f"  {case.name:<40} {before:8.0f} {peak:8.0f} {peak - before:+8.0f} {after:8.0f}   {statuses:<8}"
          f" {sent:7.1f} MiB  {elapsed / rounds:6.2f} s", flush=True)


def settle() -> None:
    time.sleep(1.0)  # the server's allocator gives memory back lazily; read the resident set when it is quiet


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def code_under_test() -> str:
    root = Path(ioc_api.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown commit"
    return f"{root} ({commit[:90]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=50, help="size of each body in MiB (default 50)")
    parser.add_argument("--clients", type=int, default=3, help="bodies sent at once (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --clients bodies per case (default 3)")
    parser.add_argument("--database-url", help="use this (empty or migrated) database instead of starting one")
    args = parser.parse_args()
    if not (1 <= args.mib <= 4096 and 1 <= args.clients <= 32 and 1 <= args.rounds <= 100):
        parser.error("--mib 1..4096, --clients 1..32, --rounds 1..100")
    signal.signal(signal.SIGTERM, _on_sigterm)
    print(f"machine: {host_line()}")
    print(f"code: {code_under_test()}")
    root = Path(tempfile.mkdtemp(prefix="ioc-body-bench-"))
    pg: LocalPostgres | None = None
    server: ApiServer | None = None
    sampler: Sampler | None = None
    try:
        pg, url = open_database(root, args.database_url)
        with psycopg.connect(url) as conn:
            migrate(conn, "off")
            seed_zones(conn, load_default_zones())
            key = create_user(conn, f"body-bench-{os.getpid()}-{int(time.time())}", "admin", [],
                              actor="body-bench")[1].key
        server = ApiServer(url, root / "api.log")
        server.wait_ready()
        sampler = Sampler(server.proc.pid)
        print(f"`ioc api` pid {server.proc.pid} on 127.0.0.1:{server.port}; {args.clients} bodies of {args.mib} MiB "
              f"at once, {args.rounds} rounds a case; RSS in MiB\n")
        print(f"  {'case':<40} {'before':>8} {'peak':>8} {'growth':>8} {'after':>8}   {'status':<8} "
              f"{'sent':>7}      {'s/round':>6}")
        for case in CASES:
            run_case(server.port, sampler, case, args.mib * MiB, args.clients, args.rounds, key)
    finally:
        if sampler is not None:
            sampler.stop()
        if server is not None:
            server.stop()
        close_database(pg, root, keep=False)


if __name__ == "__main__":
    sys.exit(main())
