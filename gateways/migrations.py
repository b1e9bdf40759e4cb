"""Versioned schema migrations, safe to run twice and from two processes at once.

Files in ``gateways/schema``: ``NNNN_name.sql`` runs in every mode, ``NNNN_name.<mode>.sql`` only in that
mode, where mode is ``timescaledb`` (the extension is available) or ``postgresql``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Literal

import psycopg
from psycopg import sql

from gateways.database import Connection
from ioc_core.errors import FatalError
from ioc_core.kinds import KINDS, LATE_AFTER, SILENT_AFTER, KindInfo
from ioc_core.metrics import VOCABULARY, Vocabulary

__all__ = [
    "Migration",
    "MigrationError",
    "Mode",
    "TimescaleChoice",
    "TimescaleNotLoaded",
    "applied",
    "detect_mode",
    "fingerprint",
    "migrate",
    "pending",
    "storage_mode",
]

Mode = Literal["timescaledb", "postgresql"]
TimescaleChoice = Literal["auto", "on", "off"]

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescaledb|postgresql))?\.sql$")
# Any constant works; it only has to be the same for every process that migrates this database.
_LOCK_KEY = 0x10C5C4E3


class MigrationError(FatalError):
    """A migration failed or the requested mode cannot be had."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    scripts: tuple[tuple[str, str], ...]  # (file name, mode or "" for all modes)

    def checksum(self, mode: Mode) -> str:
        """SHA-256 of the scripts this mode runs: an applied migration must never change."""
        digest = hashlib.sha256()
        for name, text in self.sql_for(mode):
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()

    def sql_for(self, mode: Mode) -> list[tuple[str, str]]:
        out = []
        for file_name, only in self.scripts:
            if only in ("", mode):
                text = resources.files("gateways.schema").joinpath(file_name).read_text(encoding="utf-8")
                out.append((file_name, text))
        return out


def fingerprint() -> str:
    """One hash over every migration script, to notice a schema that changed under a disposable database."""
    digest = hashlib.sha256()
    for migration in available():
        for mode in ("postgresql", "timescaledb"):
            digest.update(migration.checksum(mode).encode())
    return digest.hexdigest()


def available() -> list[Migration]:
    by_version: dict[int, tuple[str, list[tuple[str, str]]]] = {}
    for entry in resources.files("gateways.schema").iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        name = match.group(2)
        known = by_version.setdefault(version, (name, []))
        if known[0] != name:
            raise MigrationError(f"migration {version:04d} has two names: {known[0]} and {name}")
        known[1].append((entry.name, match.group(3) or ""))
    return [
        # The common script runs before the mode-specific one.
        Migration(v, name, tuple(sorted(scripts, key=lambda s: (s[1] != "", s[0]))))
        for v, (name, scripts) in sorted(by_version.items())
    ]


# by_range() in create_hypertable arrived in 2.13; compression, policies and continuous aggregates need
# the Community (timescale) licence, not the Apache-only build.
_MIN_TIMESCALEDB = (2, 13)


class TimescaleNotLoaded(MigrationError):
    """TimescaleDB is installed on the server but not preloaded, so ``CREATE EXTENSION`` would fail."""


def _preloaded(conn: Connection) -> bool:
    row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    return row is not None and "timescaledb" in {p.strip().strip('"') for p in str(row[0]).split(",")}


def detect_mode(conn: Connection, choice: TimescaleChoice = "auto") -> Mode:
    """The storage mode to install: TimescaleDB only when its extension can actually be created.

    Installed but not preloaded is neither mode: silently choosing plain PostgreSQL would leave a city that
    meant to run TimescaleDB without compression or retention, so the operator is told how to choose.
    """
    if choice == "off":
        return "postgresql"
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    problem = None
    if row is None:
        problem = "the timescaledb extension is not available"
    else:
        version = tuple(int(p) for p in re.findall(r"\d+", str(row[0]))[:2])
        if version < _MIN_TIMESCALEDB:
            problem = f"timescaledb {row[0]} is older than 2.13"
        elif not _preloaded(conn):
            raise TimescaleNotLoaded(
                f"TimescaleDB {row[0]} is installed but not loaded: add shared_preload_libraries = 'timescaledb' "
                "to postgresql.conf and restart PostgreSQL, or set IOC_TIMESCALEDB=off for plain PostgreSQL"
            )
        else:
            licence = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
            if licence is not None and licence[0] == "apache":
                problem = "timescaledb is the Apache-only build (compression and aggregates need Community)"
    if problem is None:
        return "timescaledb"
    if choice == "on":
        raise MigrationError(f"IOC_TIMESCALEDB=on but {problem}")
    return "postgresql"


def _ensure_bookkeeping(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               mode       text NOT NULL,
               -- false while the autocommitted TimescaleDB statements of a version are still running:
               -- a failure there leaves the version pending, and those statements are safe to re-run
               complete   boolean NOT NULL DEFAULT true,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


def applied(conn: Connection, *, complete_only: bool = True) -> dict[int, tuple[str, datetime]]:
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = conn.execute("SELECT version, mode, applied_at, complete FROM schema_migrations").fetchall()
    return {int(v): (str(m), at) for v, m, at, done in rows if done or not complete_only}


def storage_mode(conn: Connection) -> Mode | None:
    """The mode the schema was installed in, or None before the first migration."""
    exists = conn.execute("SELECT to_regclass('platform_info')").fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute("SELECT value FROM platform_info WHERE key = 'storage_mode'").fetchone()
    if row is None:
        return None
    return "timescaledb" if row[0] == "timescaledb" else "postgresql"


def pending(conn: Connection) -> list[Migration]:
    done = applied(conn)
    return [m for m in available() if m.version not in done]


def migrate(conn: Connection, choice: TimescaleChoice = "auto") -> tuple[Mode, list[Migration]]:
    """Apply what is missing, each migration in its own transaction, under an advisory lock."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        _ensure_bookkeeping(conn)
        mode = storage_mode(conn) or detect_mode(conn, choice)
        if mode == "timescaledb":
            if not _preloaded(conn):
                raise TimescaleNotLoaded(
                    "this database's schema uses TimescaleDB, which is installed but not loaded: add "
                    "shared_preload_libraries = 'timescaledb' to postgresql.conf and restart PostgreSQL"
                )
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        else:
            # The incomplete-bookkeeping column arrived after the first release of this table.
            conn.execute(
                "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS complete boolean NOT NULL DEFAULT true"
            )
        conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
        _check_unchanged(conn, mode)
        done = []
        for migration in pending(conn):
            try:
                _apply(conn, migration, mode)
            except psycopg.Error as err:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {str(err).strip()}"
                ) from err
            done.append(migration)
        with conn.transaction():
            conn.execute(
                "INSERT INTO platform_info (key, value) VALUES ('storage_mode', %s) "
                "ON CONFLICT (key) DO NOTHING",
                (mode,),
            )
            sync_metrics(conn, VOCABULARY)
            sync_kinds(conn, KINDS)
        return mode, done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply(conn: Connection, migration: Migration, mode: Mode) -> None:
    # Continuous aggregates cannot be created WITH DATA inside a transaction block and policies are jobs,
    # so TimescaleDB scripts run statement by statement in autocommit; everything else runs in one
    # transaction with its bookkeeping row, which stays incomplete until the TimescaleDB part succeeded.
    scripts = migration.sql_for(mode)
    plain = [text for name, text in scripts if not name.endswith(".timescaledb.sql")]
    timescale = [text for name, text in scripts if name.endswith(".timescaledb.sql")]
    started = migration.version in applied(conn, complete_only=False)
    if not started:
        with conn.transaction():
            for text in plain:
                conn.execute(sql.SQL(text))  # type: ignore[arg-type, unused-ignore]
            conn.execute(
                "INSERT INTO schema_migrations (version, name, mode, complete, checksum) VALUES (%s, %s, %s, %s, %s)",
                (migration.version, migration.name, mode, not timescale, migration.checksum(mode)),
            )
    if timescale:
        for text in timescale:
            for statement in _statements(text):
                conn.execute(sql.SQL(statement))  # type: ignore[arg-type, unused-ignore]
        conn.execute("UPDATE schema_migrations SET complete = true WHERE version = %s", (migration.version,))


def _check_unchanged(conn: Connection, mode: Mode) -> None:
    """Refuse to go on when a migration this database ran has since been edited: its schema would not match."""
    stored: dict[int, str] = {
        int(v): str(c)
        for v, c in conn.execute("SELECT version, checksum FROM schema_migrations WHERE checksum IS NOT NULL")
    }
    for migration in available():
        if migration.version in stored and stored[migration.version] != migration.checksum(mode):
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} differs from the one this database ran; "
                "its schema does not match this release (restore the database from this release's migrations, "
                "or for a disposable database, drop it and migrate again)"
            )


def _statements(text: str) -> list[str]:
    """Split a script on semicolons at line ends; our TimescaleDB scripts have no bodies with ``;``."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";").strip()]


def sync_metrics(conn: Connection, vocabulary: Vocabulary) -> None:
    """The metrics table mirrors the vocabulary in code; ids never change, so updating in place is safe."""
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO metrics (id, name, unit, minimum, maximum, description)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit,
                   minimum = EXCLUDED.minimum, maximum = EXCLUDED.maximum,
                   description = EXCLUDED.description""",
            [(m.id, m.name, m.unit, m.minimum, m.maximum, m.description) for m in vocabulary.values()],
        )


def sync_kinds(conn: Connection, kinds: Mapping[str, KindInfo]) -> None:
    """device_kinds mirrors the kinds in code so that Grafana's SQL sees the same intervals as the API."""
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO device_kinds (kind, title, interval_s, late_after, silent_after, primary_metric, metrics)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (kind) DO UPDATE SET title = EXCLUDED.title, interval_s = EXCLUDED.interval_s,
                   late_after = EXCLUDED.late_after, silent_after = EXCLUDED.silent_after,
                   primary_metric = EXCLUDED.primary_metric, metrics = EXCLUDED.metrics""",
            [(k.kind, k.title, k.interval_s, LATE_AFTER, SILENT_AFTER, k.metrics[0] if k.metrics else None,
              list(k.metrics))
             for k in kinds.values()],
        )
