"""Fixtures for import/adopt tests: a second fresh database, psql runs, schema dumps."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sqlrunner.testing import PostgresServer as Server

_numbers = itertools.count(1)


@pytest.fixture
def other_dsn(pg_server: Server, template_db: str) -> Iterator[str]:
    """A second fresh database: the one the source tool's files go to under psql."""
    name = f"t_{os.getpid()}_other_{next(_numbers)}"
    with pg_server.janitor(name, template_dbname=template_db):
        yield pg_server.dsn(name)


@pytest.fixture(scope="session")
def pg_dump(pg_server: Server) -> Path:
    """A pg_dump matching the server: the embedded wheel's, else Debian's PostgreSQL 15."""
    if pg_server.bin_dir is not None:
        return pg_server.bin_dir / "pg_dump"
    return Path("/usr/lib/postgresql/15/bin/pg_dump")


SchemaOf = Callable[..., str]  # (dsn, *other tables to leave out)


@pytest.fixture
def schema_of(pg_dump: Path) -> SchemaOf:
    """``pg_dump --schema-only`` of a database, sqlrunner's own tables left out."""

    def dump(dsn: str, *leave_out: str) -> str:
        result = subprocess.run(
            [
                str(pg_dump),
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                "--exclude-table=public.sqlrunner_ledger*",
                *(f"--exclude-table={table}" for table in leave_out),
                "-d",
                dsn,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        # \restrict carries a random key per dump (pg_dump 17.6+/18); comments name versions
        lines = [
            line
            for line in result.stdout.splitlines()
            if not re.match(r"^\\(un)?restrict |^-- Dumped ", line)
        ]
        return "\n".join(lines)

    return dump


RunPsql = Callable[[str, Path, Path], None]


@pytest.fixture
def run_psql(psql: list[str]) -> RunPsql:
    """Run a script as the source tools' users would by hand: psql, stop on the first error."""

    def run(dsn: str, script: Path, cwd: Path) -> None:
        result = subprocess.run(
            [*psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{script}: {result.stderr}"

    return run
