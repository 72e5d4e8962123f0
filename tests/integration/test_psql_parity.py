"""sqlrunner leaves exactly the schema that ``psql -X -v ON_ERROR_STOP=1 -f`` per file leaves.

A varied set is applied by sqlrunner in one run on one fresh database and by psql,
one fresh session per file, on another; ``pg_dump --schema-only`` (sqlrunner's own
tables excluded) must be identical. Then everything is rolled back both ways and
compared again. Runs on whatever server the suite uses (PostgreSQL 18 embedded, or
SQLRUNNER_TEST_DSN, e.g. Debian's 15 in CI), with the pg_dump that matches it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import sqlrunner
from sqlrunner.testing import PostgresServer as Server

from .conftest import SqlSet

NO_TX = "-- sqlrunner: no-transaction\n"


def files(owner: str) -> dict[str, str]:
    """Forward and rollback files that each leave session state behind for the next one."""
    return {
        "forward/0001_app.sql": "BEGIN;\nCREATE SCHEMA app;\n"
        "SET search_path TO app, public;\n"
        "CREATE TABLE things (id int PRIMARY KEY, updated_at timestamptz) -- lands in app\n;\n"
        "CREATE FUNCTION update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
        "BEGIN NEW.updated_at := now(); RETURN NEW; END $fn$;\n"
        "CREATE TRIGGER things_touch BEFORE UPDATE ON things\n"
        "  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();\nCOMMIT;\n",
        "rollback/0001_app.sql": "BEGIN;\nDROP SCHEMA app CASCADE;\nCOMMIT;\n",
        "forward/0002_public_fn.sql": "BEGIN;\n"
        "-- meant for public: under a leaked search_path it would replace app's body\n"
        "CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger\n"
        "LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;\n"
        "COMMIT;\n",
        "rollback/0002_public_fn.sql": "BEGIN;\n"
        "DROP FUNCTION update_updated_at_column() -- the public one\n;\nCOMMIT;\n",
        "forward/0003_tz.sql": "BEGIN;\nSET timezone = 'Asia/Kathmandu';\n"
        "SET session_replication_role = replica;\nCOMMIT;\n",
        "rollback/0003_tz.sql": "BEGIN;\nCOMMIT;\n",
        "forward/0004_events.sql": "BEGIN;\n"
        "CREATE TABLE events (id int, at timestamptz DEFAULT '2024-01-01 00:00'::timestamptz,\n"
        '  "größe" text);\n'
        "COMMENT ON TABLE events IS 'café ☕ naïve — ok';\n"
        "CREATE TYPE mood AS ENUM ('sad');\nCOMMIT;\n",
        "rollback/0004_events.sql": "BEGIN;\nDROP TABLE events;\nDROP TYPE mood;\nCOMMIT;\n",
        "forward/0005_mood.sql": "BEGIN;\nALTER TYPE mood ADD VALUE 'happy';\n"
        "DO $do$\nBEGIN\n  EXECUTE 'CREATE TABLE from_do (id int, note text DEFAULT ''$x$'')';\n"
        "END\n$do$;\nCOMMIT;\n",
        "rollback/0005_mood.sql": "BEGIN;\nDROP TABLE from_do;\nCOMMIT;\n",
        "forward/0006_owned.sql": f"BEGIN;\nSET ROLE {owner};\n"
        "CREATE TABLE owned (id int); -- owned by the role\nCOMMIT;\n",
        "rollback/0006_owned.sql": f"BEGIN;\nSET ROLE {owner};\nDROP TABLE owned;\nCOMMIT;\n",
        "forward/0007_mine.sql": "BEGIN;\nCREATE TABLE mine (id int);\n"
        "CREATE INDEX mine_id_idx ON mine (id);\nCOMMIT;\n",
        "rollback/0007_mine.sql": "BEGIN;\nDROP TABLE mine;\nCOMMIT;\n",
        "forward/0008_idx.sql": NO_TX + "SET search_path TO app;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS things_updated_idx ON things (updated_at)\n"
        "  -- built without blocking writers\n;\n",
        "rollback/0008_idx.sql": NO_TX
        + "DROP INDEX CONCURRENTLY IF EXISTS app.things_updated_idx;\n",
        "forward/0009_after.sql": "BEGIN;\nCREATE TABLE after_all (id int, at timestamptz\n"
        "  DEFAULT '2024-06-01 12:00'::timestamptz);\nCOMMIT;\n",
        "rollback/0009_after.sql": "BEGIN;\nDROP TABLE after_all;\nCOMMIT;\n",
    }


def pg_bin(server: Server, dsn: str, name: str) -> str:
    """A client program of the server's own major version."""
    with psycopg.connect(dsn) as conn:
        major = conn.info.server_version // 10000
    candidates = [server.bin_dir / name] if server.bin_dir else []
    candidates.append(Path(f"/usr/lib/postgresql/{major}/bin/{name}"))
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"no {name} for PostgreSQL {major}")
    return found


def schema_of(server: Server, dsn: str) -> str:
    dump = subprocess.run(
        [
            pg_bin(server, dsn, "pg_dump"),
            "--schema-only",
            "--exclude-table=public.sqlrunner_ledger*",
            "-d",
            dsn,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PGTZ": "UTC"},
    ).stdout
    # pg_dump 18 brackets the dump with a random \restrict key
    return "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))


def psql_each(server: Server, dsn: str, paths: list[Path]) -> None:
    """Each file in a fresh psql session, the way a DBA runs it by hand."""
    psql = pg_bin(server, dsn, "psql")
    for path in paths:
        result = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{path}: {result.stderr}"


@pytest.fixture
def second_dsn(pg_server: Server, template_db: str) -> Iterator[str]:
    name = f"t_{os.getpid()}_psql_{time.monotonic_ns() % 10**9}"
    with pg_server.janitor(name, template_dbname=template_db):
        yield pg_server.dsn(name)


@pytest.fixture
def owner(dsn: str, second_dsn: str) -> Iterator[str]:
    """A role files SET ROLE to, allowed to create tables in public on both databases."""
    name = f"app_owner_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name}")
    for each in (dsn, second_dsn):
        with psycopg.connect(each, autocommit=True) as conn:
            conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {name}")
    yield name
    for each in (dsn, second_dsn):
        with psycopg.connect(each, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE {name}")


def test_sqlrunner_leaves_the_schema_psql_leaves_and_rolls_back_the_same(
    pg_server: Server, dsn: str, second_dsn: str, owner: str, sql_set: SqlSet
) -> None:
    root = sql_set(files(owner))
    forward = sorted((root / "forward").iterdir())
    rollback = sorted((root / "rollback").iterdir(), reverse=True)

    report = sqlrunner.apply(dsn, root)
    assert len(report.applied) == len(forward)
    psql_each(pg_server, second_dsn, forward)
    applied = schema_of(pg_server, dsn)
    assert applied == schema_of(pg_server, second_dsn)
    # the set does what it says (so the comparison compares something)
    assert "CREATE FUNCTION public.update_updated_at_column()" in applied
    assert "CREATE FUNCTION app.update_updated_at_column()" in applied
    assert f"ALTER TABLE public.owned OWNER TO {owner};" in applied
    assert f"ALTER TABLE public.after_all OWNER TO {owner};" not in applied
    assert "CREATE INDEX things_updated_idx ON app.things" in applied

    sqlrunner.rollback(dsn, root, steps=len(rollback), allow_data_loss=True)
    psql_each(pg_server, second_dsn, rollback)
    assert schema_of(pg_server, dsn) == schema_of(pg_server, second_dsn)
    assert "app.things" not in schema_of(pg_server, dsn)
