"""A real PostgreSQL for every test that needs one, and a fresh database per test.

The server is the sqlrunner.testing plugin's (the one applications use): by
default an embedded PostgreSQL 18 started for the session (it runs as its own
system user, so this works as root, where pytest-postgresql's
``postgresql_proc`` cannot); ``SQLRUNNER_TEST_DSN`` points the suite at any
existing server instead (e.g. Debian's PostgreSQL 15 in CI). Each test gets its
own database, cloned by pytest-postgresql's DatabaseJanitor from an empty
template: no test sees another's leftovers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported by pytest_plugins below, after assertion rewriting is set up
    from sqlrunner.testing import PostgresServer

# sqlrunner.testing: already registered when installed (pytest11); pytester: tests/plugin.
pytest_plugins = ["sqlrunner.testing", "pytester"]

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "sqlrunner_test_template"


@pytest.fixture(scope="session")
def pg_server(sqlrunner_server: PostgresServer) -> PostgresServer:
    """The session's server: SQLRUNNER_TEST_DSN's, else a fresh embedded PostgreSQL 18."""
    return sqlrunner_server


@pytest.fixture(scope="session")
def template_db(pg_server: PostgresServer) -> Iterator[str]:
    """An empty template database; per-test databases are cloned from it."""
    janitor = pg_server.janitor(TEMPLATE, as_template=True)
    janitor.drop()
    with janitor:
        yield TEMPLATE


SqlSet = Callable[[dict[str, str]], Path]


def write_files(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{"forward/0001_x.sql": text, ...}`` under ``root`` and return ``root`` (made
    even when ``files`` is empty). Text is written as UTF-8; bytes as they are, for the
    files a set must refuse (Latin-1, CRLF)."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.fixture
def sql_set(tmp_path: Path) -> SqlSet:
    """Write ``{"forward/0001_x.sql": text, ...}`` under a fresh sql/ dir and return it."""
    return lambda files: write_files(tmp_path / "sql", files)


@pytest.fixture
def dsn(sqlrunner_empty_dsn: str) -> str:
    """A libpq DSN of a fresh, empty database, dropped after the test."""
    return sqlrunner_empty_dsn


@pytest.fixture(scope="session")
def psql(pg_server: PostgresServer) -> list[str]:
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
