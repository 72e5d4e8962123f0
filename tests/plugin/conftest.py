"""Helpers for the plugin's own tests: inner pytest runs (pytester) on the outer server.

Inner runs reuse the outer session's server through ``--sqlrunner-dsn`` (one
PostgreSQL for everything, light on CPU); only test_embedded.py starts one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sqlrunner.testing import PostgresServer
from tests.conftest import write_files

# A small application: a baseline with a table and a seed, like the shipped set.
APP_SQL = {
    "forward/0001_baseline.sql": "BEGIN;\nCREATE TABLE tiers (name text PRIMARY KEY);\n"
    "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);\n"
    "CREATE TABLE built AS SELECT clock_timestamp() AS at;\nCOMMIT;\n",
    "seed/0001_tiers.sql": "BEGIN;\nINSERT INTO tiers VALUES ('free'), ('pro') "
    "ON CONFLICT DO NOTHING;\nCOMMIT;\n",
}

WriteSql = Callable[[dict[str, str]], Path]


@pytest.fixture
def outer_dsn(sqlrunner_server: PostgresServer) -> str:
    """The outer session's server, for ``--sqlrunner-dsn``."""
    return sqlrunner_server.dsn(sqlrunner_server.maintenance_dbname)


@pytest.fixture
def write_sql(pytester: pytest.Pytester) -> WriteSql:
    """Write ``{"forward/0001_x.sql": text}`` under the inner project's sql/ and return it."""
    return lambda files: write_files(pytester.path / "sql", files)


@pytest.fixture
def run_inner(pytester: pytest.Pytester, outer_dsn: str) -> Callable[..., pytest.RunResult]:
    """Run pytest in the inner project with the plugin, on the outer server."""

    def run(*args: str, dsn: str | None = outer_dsn) -> pytest.RunResult:
        server = (f"--sqlrunner-dsn={dsn}",) if dsn else ()
        return pytester.runpytest(
            "-p", "sqlrunner.testing", "-p", "no:cacheprovider", *server, *args
        )

    return run
