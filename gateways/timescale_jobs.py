"""TimescaleDB's policy jobs as the schema installs them: list them in the order a day of schedules runs them,
pause them, run each now, and hand them back to the scheduler. Benchmarks bring a filled database up to date
with them, and tests decide when jobs run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateways.database import Connection

__all__ = ["POLICIES", "PolicyJob", "pause_policy_jobs", "policy_jobs", "resume_policy_jobs", "run_policy_jobs"]

# Refreshes first, then compression, then retention: a refresh reads raw rows that compression then packs and
# retention drops, as their schedules order them over time.
POLICIES = ("policy_refresh_continuous_aggregate", "policy_compression", "policy_retention")


@dataclass(frozen=True, slots=True)
class PolicyJob:
    job_id: int
    proc: str
    table: str  # the hypertable or continuous aggregate the job works on, as timescaledb_information names it


def policy_jobs(conn: Connection) -> list[PolicyJob]:
    rows = conn.execute(
        """SELECT job_id, proc_name, coalesce(hypertable_name, '') FROM timescaledb_information.jobs
           WHERE proc_name = ANY(%(p)s) ORDER BY array_position(%(p)s, proc_name::text), job_id""",
        {"p": list(POLICIES)},
    ).fetchall()
    return [PolicyJob(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def pause_policy_jobs(conn: Connection) -> None:
    conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                 "WHERE proc_name = ANY(%s)", (list(POLICIES),))


def resume_policy_jobs(conn: Connection) -> None:
    conn.execute("SELECT alter_job(job_id, scheduled => true) FROM timescaledb_information.jobs "
                 "WHERE proc_name = ANY(%s)", (list(POLICIES),))


def run_policy_jobs(conn: Connection, done: Callable[[PolicyJob], None] | None = None) -> list[PolicyJob]:
    """Run every policy job now, in ``POLICIES`` order (``CALL run_job`` needs autocommit); ``done`` after each."""
    jobs = policy_jobs(conn)
    for job in jobs:
        conn.execute("CALL run_job(%s)", (job.job_id,))
        if done is not None:
            done(job)
    return jobs
