"""The pytest side: options, fixtures, and a broken migration set reported at collection.

Nothing happens until a test asks for a fixture: the plugin is installed into
every pytest session of an environment that has ``sqlrunner[testing]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ..errors import SqlRunnerError
from .databases import Settings, TestDatabases
from .server import PostgresServer, masked

DATABASES = pytest.StashKey[TestDatabases]()
ENV_DSN = "SQLRUNNER_TEST_DSN"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqlrunner", "sqlrunner test databases")
    group.addoption(
        "--sqlrunner-dsn",
        help=f"an existing PostgreSQL server to create test databases on (default: ${ENV_DSN}, "
        "else an embedded PostgreSQL started for the session)",
    )
    group.addoption(
        "--sqlrunner-sql-dir", help="the migration set (default: ini sqlrunner_sql_dir)"
    )
    group.addoption(
        "--sqlrunner-ledger-schema",
        help="schema of the ledger (default: ini sqlrunner_ledger_schema)",
    )
    parser.addini("sqlrunner_sql_dir", "the migration set, relative to the rootdir", default="sql")
    parser.addini("sqlrunner_ledger_schema", "schema of sqlrunner's ledger", default="public")


def settings(config: pytest.Config) -> Settings:
    """Flag > environment (the DSN only) > ini option > default."""
    flag_dir = config.getoption("sqlrunner_sql_dir")
    if flag_dir:
        sql_dir = Path(flag_dir).resolve()  # relative to where pytest was invoked
    else:
        base = config.inipath.parent if config.inipath else config.rootpath
        sql_dir = (base / str(config.getini("sqlrunner_sql_dir"))).resolve()
    schema = config.getoption("sqlrunner_ledger_schema") or str(
        config.getini("sqlrunner_ledger_schema")
    )
    dsn = config.getoption("sqlrunner_dsn") or os.environ.get(ENV_DSN) or None
    return Settings(sql_dir, schema, dsn)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[DATABASES] = TestDatabases(settings(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    databases = config.stash.get(DATABASES, None)
    if databases is not None:
        databases.close()


def pytest_report_header(config: pytest.Config) -> str:
    chosen = config.stash[DATABASES].settings
    where = masked(chosen.dsn) if chosen.dsn else "embedded PostgreSQL (started on first use)"
    return f"sqlrunner: {chosen.sql_dir} on {where}"


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only tests that will run count
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Migrate the template now, so a broken file is one collection error, not N test errors."""
    if config.option.collectonly or not any(
        "sqlrunner_dsn" in getattr(item, "fixturenames", ()) for item in items
    ):
        return
    databases = config.stash[DATABASES]
    try:
        databases.template()
    except SqlRunnerError as exc:
        try:
            nodeid = databases.settings.sql_dir.relative_to(config.rootpath).as_posix()
        except ValueError:
            nodeid = str(databases.settings.sql_dir)
        report = pytest.CollectReport(nodeid, "failed", f"sqlrunner: {exc}", [])
        config.hook.pytest_collectreport(report=report)


def _databases(request: pytest.FixtureRequest) -> TestDatabases:
    return request.config.stash[DATABASES]


@pytest.fixture(scope="session")
def sqlrunner_server(request: pytest.FixtureRequest) -> PostgresServer:
    """The session's PostgreSQL: --sqlrunner-dsn / $SQLRUNNER_TEST_DSN, else an embedded one."""
    try:
        return _databases(request).server()
    except SqlRunnerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def sqlrunner_dsn(
    request: pytest.FixtureRequest, sqlrunner_server: PostgresServer
) -> Iterator[str]:
    """The DSN of a fresh database with the migration set applied (forward files and seeds),
    cloned from the session's template and dropped after the test."""
    databases = _databases(request)
    try:
        template = databases.template()
    except SqlRunnerError as exc:
        pytest.fail(str(exc), pytrace=False)
    with databases.database(template) as dsn:
        yield dsn


@pytest.fixture
def sqlrunner_empty_dsn(
    request: pytest.FixtureRequest, sqlrunner_server: PostgresServer
) -> Iterator[str]:
    """The DSN of a fresh, empty database (for assert_round_trip and assert_rerun_safe)."""
    with _databases(request).database(None) as dsn:
        yield dsn


@pytest.fixture
def sqlrunner_conn(sqlrunner_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection to ``sqlrunner_dsn``, closed after the test."""
    conn = psycopg.connect(sqlrunner_dsn)
    try:
        yield conn
    finally:
        conn.close()
