"""The other tool itself, where it is installed: its own deploy builds the schema and its
own registry, and sqlrunner takes both over (no hand-written ledger rows)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import sqlrunner
from sqlrunner.adopt import adopt
from sqlrunner.errors import AdoptionRefused
from sqlrunner.importing import import_from
from tests.conftest import write_files

from .conftest import SchemaOf
from .sets import SETS

SQITCH = shutil.which("sqitch")


def _uri(dsn: str) -> str:
    """A libpq conninfo as Sqitch's ``db:pg:`` target (the socket directory as a host)."""
    p = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v}
    auth = p.get("user", "postgres") + (f":{p['password']}" if "password" in p else "")
    host = p.get("host", "localhost")
    if host.startswith("/"):
        return f"db:pg://{auth}@/{p['dbname']}?host={host}&port={p.get('port', '5432')}"
    return f"db:pg://{auth}@{host}:{p.get('port', '5432')}/{p['dbname']}"


def _sqitch(src: Path, psql: list[str], *args: str) -> str:
    assert SQITCH is not None
    env = {
        **os.environ,
        "SQITCH_FULLNAME": "Marge N. O'Vera",
        "SQITCH_EMAIL": "marge@example.com",
        "SQITCH_USER_CONFIG": str(src / "no-user.conf"),
        "SQITCH_SYSTEM_CONFIG": str(src / "no-system.conf"),
    }
    done = subprocess.run(
        [SQITCH, "--chdir", str(src), *args, "--db-client", psql[0]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"sqitch {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.skipif(SQITCH is None, reason="sqitch is not installed (.ci/run installs it)")
def test_sqitch_deployed_database_is_adopted_and_matches_sqlrunners_schema(
    dsn: str, other_dsn: str, tmp_path: Path, psql: list[str], schema_of: SchemaOf
) -> None:
    src = write_files(tmp_path / "src", SETS["sqitch"])
    _sqitch(src, psql, "deploy", "--verify", "--target", _uri(other_dsn))
    edited = shutil.copytree(src, tmp_path / "edited")  # a deploy script changed since
    (edited / "deploy" / "users.sql").write_text(
        (src / "deploy" / "users.sql").read_text().replace("NOW()", "clock_timestamp()")
    )
    import_from("sqitch", edited, tmp_path / "edited-sql")
    with pytest.raises(AdoptionRefused, match=r"users but the imported file deploy/users\.sql"):
        adopt(other_dsn, tmp_path / "edited-sql", tool="sqitch")

    sql_dir = tmp_path / "sql"
    import_from("sqitch", src, sql_dir)

    report = adopt(other_dsn, sql_dir, tool="sqitch")
    assert report.marked == (
        "0001_appschema",
        "0002_users",
        "0003_insert_user",
        "0004_users_nickname_idx",
        "0005_insert_user",
    )
    assert sqlrunner.status(other_dsn, sql_dir).up_to_date
    assert sqlrunner.verify(other_dsn, sql_dir).ok  # converted verify scripts pass

    sqlrunner.apply(dsn, sql_dir)
    with psycopg.connect(other_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA sqitch CASCADE")  # Sqitch's registry: not the app's schema
    assert schema_of(dsn) == schema_of(other_dsn)


DBMATE = shutil.which("dbmate")


def _dbmate(dsn: str, src: Path, *args: str) -> None:
    assert DBMATE is not None
    p = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v}
    auth = p.get("user", "postgres") + (f":{p['password']}" if "password" in p else "")
    host, port = p.get("host", "localhost"), p.get("port", "5432")
    if host.startswith("/"):  # dbmate takes a socket directory as ?socket=
        url = f"postgres://{auth}@/{p['dbname']}?socket={host}&port={port}&sslmode=disable"
    else:
        url = f"postgres://{auth}@{host}:{port}/{p['dbname']}?sslmode=disable"
    done = subprocess.run(
        [DBMATE, "--url", url, "--migrations-dir", str(src), "--no-dump-schema", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"dbmate {' '.join(args)}: {done.stdout}{done.stderr}"


@pytest.mark.skipif(DBMATE is None, reason="dbmate is not installed (.ci/run installs it)")
def test_dbmate_migrated_database_is_adopted_and_rolls_back_like_dbmate(
    dsn: str, other_dsn: str, tmp_path: Path, schema_of: SchemaOf
) -> None:
    src = write_files(tmp_path / "src", SETS["dbmate"])
    _dbmate(other_dsn, src, "up")
    sql_dir = tmp_path / "sql"
    import_from("dbmate", src, sql_dir)

    assert len(adopt(other_dsn, sql_dir, tool="dbmate").marked) == 4
    assert sqlrunner.status(other_dsn, sql_dir).up_to_date
    assert not sqlrunner.apply(other_dsn, sql_dir).applied

    sqlrunner.apply(dsn, sql_dir)

    def dbmate_schema() -> str:  # dbmate's ledger is not the app's schema
        return schema_of(other_dsn, "public.schema_migrations")

    assert schema_of(dsn) == dbmate_schema()
    for _ in range(3):  # newest first: the empty placeholder, orders, the concurrent index
        _dbmate(other_dsn, src, "rollback")
    sqlrunner.rollback(dsn, sql_dir, steps=3)
    assert schema_of(dsn) == dbmate_schema()
    assert "orders" not in schema_of(dsn) and "CREATE TABLE public.users" in schema_of(dsn)
