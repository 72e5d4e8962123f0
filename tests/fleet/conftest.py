"""Fleets for the tests: many real databases on the test server, and a second server.

Databases are cloned from an empty template in one session (CREATE DATABASE …
STRATEGY FILE_COPY: a file copy, tens of milliseconds each) and dropped with FORCE
afterwards. The second server is Debian's PostgreSQL 15, started as the postgres
user like .ci/run does; the tests that need it skip (saying why) where it is absent.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from sqlrunner.testing import PostgresServer

PG15 = Path("/usr/lib/postgresql/15/bin")
MakeDatabases = Callable[..., list[str]]


def _create(server_dsn: str, names: list[str], template: str, own_server: bool) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        # FILE_COPY checkpoints: cheap on a throwaway fsync-off server, not on a shared one
        copy = own_server and conn.info.server_version >= 150000
        for name in names:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
            conn.execute(query + sql.SQL(" STRATEGY FILE_COPY") if copy else query)


def _drop(server_dsn: str, names: list[str]) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def make_databases(pg_server: PostgresServer, template_db: str) -> Iterator[MakeDatabases]:
    """``make_databases(n, server=None)``: n fresh empty databases, their DSNs in order."""
    made: list[tuple[str, list[str]]] = []
    token = secrets.token_hex(3)

    def make(n: int, server: PostgresServer | None = None, prefix: str = "fleet") -> list[str]:
        server = server or pg_server
        template = template_db if server is pg_server else "template0"
        names = [f"{prefix}_{token}_{len(made)}_{i:04d}" for i in range(n)]
        maintenance = server.dsn(server.maintenance_dbname)
        made.append((maintenance, names))
        _create(maintenance, names, template, server.embedded or server is not pg_server)
        return [server.dsn(name) for name in names]

    yield make
    for maintenance, names in made:
        _drop(maintenance, names)


def write_targets(tmp_path: Path, dsns: list[str], name: str = "targets.txt") -> Path:
    """A targets file of ``dsns`` as an operator writes one: a comment, a blank line, one
    DSN a line."""
    path = tmp_path / name
    path.write_text("# the fleet\n\n" + "\n".join(dsns) + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[PostgresServer]:
    """A second server: Debian's PostgreSQL 15 in a temporary directory, run as postgres."""
    if not (PG15 / "postgres").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin; .ci/run adds it)")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL 15 as the postgres user needs root (runuser)")
    root = Path(tempfile.mkdtemp(prefix="sqlrunner-fleet-pg15-"))
    shutil.chown(root, "postgres")
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    subprocess.run(
        [*as_postgres, str(PG15 / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [*as_postgres, str(PG15 / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-l", str(root / "log"), "-w", "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer({"host": "127.0.0.1", "port": str(port), "user": "postgres"})
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def ledger_versions(dsn: str, schema: str = "public") -> list[int]:
    """The forward versions a database's ledger holds ([] when it has none)."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (schema, "sqlrunner_ledger"),
        ).fetchone()
        if found is None or not found[0]:
            return []
        query = sql.SQL("SELECT version FROM {} WHERE kind = 'forward' ORDER BY version").format(
            sql.Identifier(schema, "sqlrunner_ledger")
        )
        return [int(row[0]) for row in conn.execute(query)]
