"""What files may hold, checked on a real PostgreSQL: refused before anything runs, or run as psql would.

Every refusal leaves the database exactly as it was (no ledger, no table).
"""

from __future__ import annotations

import psycopg
import pytest

import sqlrunner
from sqlrunner.files import load_migration_set

from .conftest import SqlSet

TABLE_T = "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n"


def untouched(dsn: str) -> bool:
    """No relation at all in public: neither the files' tables nor sqlrunner's ledger."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ).fetchone()
    return row is not None and row[0] == 0


def rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def ledger(dsn: str) -> list[tuple[object, ...]]:
    return rows(dsn, "SELECT kind, version, name FROM sqlrunner_ledger ORDER BY kind, version")


def version_types(dsn: str) -> list[object]:
    """The type of ``version`` in the ledger, its history and its progress table."""
    return [
        row[0]
        for row in rows(
            dsn,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = 'version' "
            "AND attrelid = ANY (ARRAY['sqlrunner_ledger', 'sqlrunner_ledger_history', "
            "'sqlrunner_ledger_progress']::regclass[]) ORDER BY attrelid::regclass::text",
        )
    ]


def invalid(dsn: str, root: object) -> sqlrunner.InvalidMigrationSet:
    with pytest.raises(sqlrunner.InvalidMigrationSet) as caught:
        sqlrunner.apply(dsn, root)  # type: ignore[arg-type]
    assert caught.value.exit_code == 2
    assert untouched(dsn)
    return caught.value


# --- 9.6: a NUL byte ---------------------------------------------------------------------


def test_a_nul_byte_refuses_the_file_before_anything_runs(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": TABLE_T,
            # libpq and the parser read C strings: everything after the NUL would vanish
            "forward/0002_nul.sql": "BEGIN;\nCREATE TABLE a (id int);\x00\n"
            "CREATE TABLE b (id int);\nCOMMIT;\n",
        }
    )

    error = invalid(dsn, root)

    assert str(error).startswith("forward/0002_nul.sql:2:25: NUL byte (0x00)")
    assert [(p.path, p.line, p.column) for p in error.problems] == [("forward/0002_nul.sql", 2, 25)]


# --- 10.4: timestamp versions ------------------------------------------------------------


def test_timestamp_versions_apply_report_and_roll_back(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/20240101120000_init.sql": TABLE_T,
            "forward/20240102093000_t_id.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id ON t (id);\n",
            "rollback/20240102093000_t_id.sql": "BEGIN;\nDROP INDEX t_id;\nCOMMIT;\n",
            "verify/20240102093000_t_id.sql": "SELECT 't_id', to_regclass('t_id') IS NOT NULL, '';\n",
        }
    )

    report = sqlrunner.apply(dsn, root)

    assert [(r.version, r.action) for r in report.applied] == [
        (20240101120000, "applied"),
        (20240102093000, "applied"),
    ]
    assert report.verification is not None and report.verification.ok
    assert ledger(dsn) == [
        ("forward", 20240101120000, "init"),
        ("forward", 20240102093000, "t_id"),
    ]
    assert [s.state for s in sqlrunner.status(dsn, root).files] == ["applied", "applied"]
    assert version_types(dsn) == ["bigint", "bigint", "bigint"]

    sqlrunner.rollback(dsn, root)

    assert ledger(dsn) == [("forward", 20240101120000, "init")]
    assert rows(dsn, "SELECT to_regclass('t_id')") == [(None,)]


def test_a_ledger_made_with_integer_versions_is_widened_on_the_next_run(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_t.sql": TABLE_T})
    sqlrunner.apply(dsn, root)
    with psycopg.connect(dsn) as conn:  # the tables as sqlrunner created them before bigint
        for table in ("sqlrunner_ledger", "sqlrunner_ledger_history", "sqlrunner_ledger_progress"):
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN version TYPE integer")
    root = sql_set({"forward/20240101120000_more.sql": "BEGIN;\nCREATE TABLE u ();\nCOMMIT;\n"})

    sqlrunner.apply(dsn, root)

    assert ledger(dsn) == [("forward", 1, "t"), ("forward", 20240101120000, "more")]
    assert version_types(dsn) == ["bigint", "bigint", "bigint"]


def test_a_ledger_under_another_name_is_widened_too(dsn: str, sql_set: SqlSet) -> None:
    names = {"ledger_schema": "Ops Schema", "ledger_table": 'mig"ledger'}
    sqlrunner.apply(dsn, sql_set({"forward/0001_t.sql": TABLE_T}), **names)
    with psycopg.connect(dsn) as conn:
        conn.execute("""ALTER TABLE "Ops Schema"."mig""ledger" ALTER COLUMN version TYPE integer""")
    root = sql_set({"forward/20240101120000_more.sql": "BEGIN;\nCREATE TABLE u ();\nCOMMIT;\n"})

    sqlrunner.apply(dsn, root, **names)

    assert rows(dsn, """SELECT version FROM "Ops Schema"."mig""ledger" ORDER BY 1""") == [
        (1,),
        (20240101120000,),
    ]


def test_a_version_past_bigint_is_refused_when_loading(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/9223372036854775808_huge.sql": TABLE_T})

    error = invalid(dsn, root)

    assert str(error) == (
        "forward/9223372036854775808_huge.sql: version 9223372036854775808 is too large: the "
        "ledger stores versions as bigint (at most 9223372036854775807, e.g. a 14-digit "
        "timestamp)"
    )


# --- 10.8 / 10.9: refused before anything runs -------------------------------------------


def test_a_psql_meta_command_is_refused_before_anything_runs(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": TABLE_T,
            "forward/0002_psql.sql": "\\set ON_ERROR_STOP on\nBEGIN;\nCREATE TABLE u ();\nCOMMIT;\n",
        }
    )

    error = invalid(dsn, root)

    assert str(error) == (
        "forward/0002_psql.sql:1:1: psql meta-command \\set: sqlrunner does not run psql "
        "meta-commands; delete the line: sqlrunner always stops at the first error"
    )


def test_a_syntax_error_is_a_sql_error_and_nothing_runs(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": TABLE_T,
            "forward/0002_typo.sql": "BEGIN;\nCREATE TABEL u (id int);\nCOMMIT;\n",
        }
    )

    with pytest.raises(sqlrunner.MigrationFailed) as caught:
        sqlrunner.apply(dsn, root)

    error = caught.value
    assert (error.exit_code, error.sqlstate, error.line, error.column) == (4, "42601", 2, 8)
    assert error.file == "forward/0002_typo.sql"
    assert str(error).endswith("| nothing was run; fix the file and run the command again")
    assert untouched(dsn)


# --- 10.10: empty files ------------------------------------------------------------------


def test_empty_and_comment_only_files_are_applied_and_recorded(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_empty.sql": "",
            "forward/0002_placeholder.sql": "-- kept for numbering; the change moved to 0003\n",
            "forward/0003_t.sql": TABLE_T,
            "forward/0004_later.sql": "-- sqlrunner: no-transaction\n/* nothing yet */\n",
            "rollback/0002_placeholder.sql": "\n",
        }
    )

    report = sqlrunner.apply(dsn, root)

    assert [(r.version, r.statements) for r in report.applied] == [(1, 0), (2, 0), (3, 1), (4, 0)]
    assert [v for _, v, _ in ledger(dsn)] == [1, 2, 3, 4]
    assert {s.state for s in sqlrunner.status(dsn, root).files} == {"applied"}
    assert sqlrunner.apply(dsn, root).applied == ()


# --- 10.11 / 10.14: the set as a whole ---------------------------------------------------


def test_a_verify_file_without_its_forward_file_is_refused(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": TABLE_T,
            "verify/0002_u.sql": "SELECT 'u', to_regclass('u') IS NOT NULL, '';\n",
        }
    )

    error = invalid(dsn, root)

    assert str(error) == (
        "verify/0002_u.sql: verify file without a forward file of version 0002: it would never run"
    )


def test_apply_refuses_to_start_when_a_pending_migrations_rollback_is_invalid(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": TABLE_T,
            "rollback/0001_t.sql": "DROP TABLE t;\n",  # no BEGIN/COMMIT
            "forward/0002_u.sql": "BEGIN;\nCREATE TABLE u ();\nCOMMIT;\n",
            "rollback/0002_u.sql": "BEGIN;\n\\echo dropping u\nDROP TABLE u;\nCOMMIT;\n",
        }
    )

    error = invalid(dsn, root)

    assert [(p.path, p.line, p.column) for p in error.problems] == [
        ("rollback/0001_t.sql", 1, 1),
        ("rollback/0002_u.sql", 2, 1),
    ]
    assert str(error).startswith("2 problems: rollback/0001_t.sql:1:1: must be wrapped in BEGIN")
    assert "rollback/0002_u.sql:2:1: psql meta-command \\echo" in str(error)


def test_a_rollback_with_a_syntax_error_stops_apply_as_a_sql_error(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_t.sql": TABLE_T,
            "rollback/0001_t.sql": "BEGIN;\nDROP TABEL t;\nCOMMIT;\n",
        }
    )

    with pytest.raises(sqlrunner.MigrationFailed) as caught:
        sqlrunner.apply(dsn, root)

    assert (caught.value.file, caught.value.line, caught.value.sqlstate) == (
        "rollback/0001_t.sql",
        2,
        "42601",
    )
    assert untouched(dsn)


def test_an_applied_migrations_broken_rollback_does_not_block_new_ones(
    dsn: str, sql_set: SqlSet
) -> None:
    sqlrunner.apply(dsn, sql_set({"forward/0001_t.sql": TABLE_T}))
    root = sql_set(
        {
            "rollback/0001_t.sql": "DROP TABLE t;\n",
            "forward/0002_u.sql": "BEGIN;\nCREATE TABLE u ();\nCOMMIT;\n",
        }
    )

    assert [r.version for r in sqlrunner.apply(dsn, root).applied] == [2]


def test_a_loaded_set_is_applied_without_reading_the_folder_again(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_t.sql": TABLE_T})
    files = load_migration_set(root)
    (root / "forward" / "0001_t.sql").unlink()  # what runs is what was loaded

    assert [r.version for r in sqlrunner.apply(dsn, files).applied] == [1]
    assert sqlrunner.apply(dsn, files).applied == ()
    assert [s.state for s in sqlrunner.status(dsn, files).files] == ["applied"]
