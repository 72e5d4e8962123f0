"""sqlrunner_dsn / sqlrunner_conn as an application's suite meets them (inner pytest runs)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from .conftest import APP_SQL, WriteSql

Run = Callable[..., pytest.RunResult]

ISOLATION_TESTS = """
import psycopg

def _add_note_and_count(dsn):
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('mine')")
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM notes").fetchone()[0]

def test_first_sees_only_its_own_row(sqlrunner_dsn):
    assert _add_note_and_count(sqlrunner_dsn) == 1

def test_second_sees_only_its_own_row(sqlrunner_dsn):
    assert _add_note_and_count(sqlrunner_dsn) == 1

def test_conn_fixture_has_seeds_and_no_rows(sqlrunner_conn):
    assert sqlrunner_conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    tiers = sqlrunner_conn.execute("SELECT name FROM tiers ORDER BY 1").fetchall()
    assert tiers == [("free",), ("pro",)]
    sqlrunner_conn.execute("INSERT INTO notes (body) VALUES ('uncommitted')")

def test_each_test_has_its_own_database(sqlrunner_dsn, sqlrunner_conn):
    name = sqlrunner_conn.execute("SELECT current_database()").fetchone()[0]
    assert name in sqlrunner_dsn
    assert sqlrunner_conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
"""


def test_one_tests_rows_are_never_seen_by_another(
    write_sql: WriteSql, pytester: pytest.Pytester, run_inner: Run
) -> None:
    write_sql(APP_SQL)
    pytester.makepyfile(test_app=ISOLATION_TESTS)
    result = run_inner("-q")
    result.assert_outcomes(passed=4)


def test_template_is_migrated_once_and_rebuilt_when_a_file_changes(
    write_sql: WriteSql,
    pytester: pytest.Pytester,
    run_inner: Run,
    outer_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sql = write_sql(APP_SQL)
    pytester.makepyfile(
        test_app=f"""
        from pathlib import Path
        built = []

        def _built_at(conn):
            return conn.execute("SELECT at FROM built").fetchone()[0]

        def test_one(sqlrunner_conn):
            built.append(_built_at(sqlrunner_conn))

        def test_two(sqlrunner_conn):
            built.append(_built_at(sqlrunner_conn))
            assert built[0] == built[1]  # one migration for both tests

        def test_a_new_file_is_picked_up(sqlrunner_conn):
            assert sqlrunner_conn.execute("SELECT to_regclass('tags')").fetchone()[0] is None
            Path({str(sql)!r}, "forward", "0002_tags.sql").write_text(
                "BEGIN;\\nCREATE TABLE tags (tag text);\\nCOMMIT;\\n")

        def test_after_the_change(sqlrunner_conn):
            assert sqlrunner_conn.execute("SELECT to_regclass('tags')").fetchone()[0] == "tags"
            assert _built_at(sqlrunner_conn) > built[0]  # the template was rebuilt

        def test_an_edited_file_is_picked_up(sqlrunner_conn):
            Path({str(sql)!r}, "forward", "0002_tags.sql").write_text(
                "BEGIN;\\nCREATE TABLE labels (label text);\\nCOMMIT;\\n")

        def test_after_the_edit(sqlrunner_conn):
            found = sqlrunner_conn.execute("SELECT to_regclass('tags'), to_regclass('labels')")
            assert found.fetchone() == (None, "labels")
        """
    )
    # The environment variable names the existing server here (the flag elsewhere).
    monkeypatch.setenv("SQLRUNNER_TEST_DSN", outer_dsn)
    result = run_inner("-q", dsn=None)
    result.assert_outcomes(passed=6)


def test_broken_migration_is_one_collection_error_with_path_line_column(
    write_sql: WriteSql, pytester: pytest.Pytester, run_inner: Run
) -> None:
    write_sql(
        {
            **APP_SQL,
            "forward/0002_broken.sql": "BEGIN;\n-- a comment\nALTER TABLE tiers\n"
            "    ADD COLUMN rank int REFERENCES no_such_table (id);\nCOMMIT;\n",
        }
    )
    pytester.makepyfile(
        test_app="def test_a(sqlrunner_dsn): pass\ndef test_b(sqlrunner_conn): pass\n"
    )
    result = run_inner("-q")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "ERROR collecting sql" in out
    assert "sql/forward/0002_broken.sql:3:" in out
    assert "SQLSTATE 42P01" in out and "no_such_table" in out
    assert "1 error during collection" in out
    assert "Traceback" not in out and "test_a PASSED" not in out


def test_unreachable_server_fails_fast_and_hides_the_password(
    write_sql: WriteSql, pytester: pytest.Pytester, run_inner: Run
) -> None:
    write_sql(APP_SQL)
    pytester.makepyfile(test_app="def test_a(sqlrunner_dsn): pass\n")
    # Port 9 on loopback: nothing listens (the connection is refused at once).
    started = time.monotonic()
    result = run_inner("-q", dsn="postgresql://app:s3cret-pw@127.0.0.1:9/postgres")
    assert time.monotonic() - started < 30  # pytest-postgresql's noproc waits 60 s
    result.assert_outcomes(errors=1)
    out = result.stdout.str() + result.stderr.str()
    assert "cannot connect to the test server" in out and "password=***" in out
    assert "s3cret-pw" not in out


def test_role_without_createdb_is_one_clear_error(
    write_sql: WriteSql, pytester: pytest.Pytester, run_inner: Run, outer_dsn: str
) -> None:
    write_sql(APP_SQL)
    pytester.makepyfile(test_app="def test_a(sqlrunner_dsn): pass\n")
    role = "sqlrunner_plugin_nocreatedb"
    with psycopg.connect(outer_dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'pw-not-shown'")
    try:
        params = {**psycopg.conninfo.conninfo_to_dict(outer_dsn), "user": role}
        params["password"] = "pw-not-shown"
        result = run_inner("-q", dsn=psycopg.conninfo.make_conninfo(**params))
    finally:
        with psycopg.connect(outer_dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "cannot create the template database" in out
    assert "permission denied to create database" in out
    assert "pw-not-shown" not in out and "Traceback" not in out and "INTERNALERROR" not in out


def test_tests_without_the_fixtures_need_no_server(
    pytester: pytest.Pytester, run_inner: Run
) -> None:
    pytester.makepyfile(test_plain="def test_plain(): assert True\n")
    result = run_inner("-q", dsn="postgresql://app:pw@127.0.0.1:9/postgres")
    result.assert_outcomes(passed=1)


def test_ini_options_choose_the_sql_dir_and_ledger_schema(
    pytester: pytest.Pytester, run_inner: Run
) -> None:
    for relative, text in APP_SQL.items():
        path = pytester.path / "db" / "migrations" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    pytester.makeini(
        "[pytest]\nsqlrunner_sql_dir = db/migrations\nsqlrunner_ledger_schema = ops_meta\n"
    )
    pytester.makepyfile(
        test_app="""
        def test_ledger_in_its_schema(sqlrunner_conn):
            rows = sqlrunner_conn.execute(
                "SELECT version FROM ops_meta.sqlrunner_ledger WHERE kind = 'forward'")
            assert rows.fetchall() == [(1,)]
            assert sqlrunner_conn.execute("SELECT to_regclass('public.sqlrunner_ledger')"
                                          ).fetchone()[0] is None
        """
    )
    run_inner("-q").assert_outcomes(passed=1)
    # The flag wins over the ini option.
    run_inner("-q", "--sqlrunner-ledger-schema=public").assert_outcomes(failed=1)


def test_xdist_workers_each_get_isolated_databases(
    write_sql: WriteSql, pytester: pytest.Pytester, run_inner: Run
) -> None:
    import xdist  # noqa: F401  (the dev extra installs pytest-xdist; no silent skip)

    write_sql(APP_SQL)
    pytester.makepyfile(test_app=ISOLATION_TESTS)
    result = run_inner("-q", "-n", "2")
    result.assert_outcomes(passed=4)
