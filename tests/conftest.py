"""The tests' fixtures, grouped by concern into plugins (as psycopg's ``tests/fix_*.py`` are).

- ``tests.fix_postgres``: the plain and the TimescaleDB server, the template database, a database per test,
  and the ``both_modes`` parametrisation over the storage modes;
- ``tests.fix_broker``: a Mosquitto broker of each test's own;
- ``tests.fix_api``: the API on a test's database, its client and an admin's key;
- ``tests.fix_standins``: the ChirpStack and Grafana stand-ins, and our adapters' clients connected to them.

Services run as local processes on free loopback ports (or containers, with ``IOC_TEST_DOCKER=1``); one that
cannot start skips its tests locally and fails them under ``CI=true``.
"""

pytest_plugins = (
    "tests.fix_postgres",
    "tests.fix_broker",
    "tests.fix_api",
    "tests.fix_standins",
)
