"""assert_round_trip, assert_rerun_safe and loader() on a real server."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from sqlrunner.testing import assert_rerun_safe, assert_round_trip

from .conftest import WriteSql

BASELINE = "BEGIN;\nCREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);\nCOMMIT;\n"


def test_shipped_set_round_trips(sqlrunner_empty_dsn: str, sql_dir: Path) -> None:
    assert_round_trip(sqlrunner_empty_dsn, sql_dir)


def test_shipped_no_transaction_files_are_rerun_safe(
    sqlrunner_empty_dsn: str, sql_dir: Path
) -> None:
    assert_rerun_safe(sqlrunner_empty_dsn, sql_dir)


def test_round_trip_names_what_a_rollback_leaves_behind(
    sqlrunner_empty_dsn: str, write_sql: WriteSql
) -> None:
    sql = write_sql(
        {
            "forward/0001_baseline.sql": BASELINE,  # irreversible: the round trip starts above it
            "forward/0002_email.sql": "BEGIN;\nALTER TABLE accounts ADD COLUMN email text;\n"
            "CREATE INDEX accounts_email_idx ON accounts (email);\nCOMMIT;\n",
            # Forgets the column (and so keeps the index).
            "rollback/0002_email.sql": "BEGIN;\nSELECT 1;\nCOMMIT;\n",
        }
    )
    with pytest.raises(AssertionError) as failure:
        assert_round_trip(sqlrunner_empty_dsn, sql)
    message = str(failure.value)
    assert "rollback did not restore the schema" in message
    assert "+public | accounts | email | text" in message
    assert "+public | accounts_email_idx" in message
    assert "accounts | id" not in message  # only the difference is shown


def test_round_trip_catches_a_re_apply_that_differs(
    sqlrunner_empty_dsn: str, write_sql: WriteSql
) -> None:
    """A migration that reads data: the seed's rows, left by the rollback, change its DDL."""
    sql = write_sql(
        {
            "forward/0001_baseline.sql": BASELINE.replace(
                "COMMIT;", "CREATE TABLE settings (name text PRIMARY KEY);\nCOMMIT;"
            ),
            "forward/0002_legacy.sql": "BEGIN;\nDO $$ BEGIN IF EXISTS (SELECT FROM settings) THEN"
            " ALTER TABLE accounts ADD COLUMN legacy_flag boolean; END IF; END $$;\nCOMMIT;\n",
            "rollback/0002_legacy.sql": "BEGIN;\n"
            "ALTER TABLE accounts DROP COLUMN IF EXISTS legacy_flag;\nCOMMIT;\n",
            "seed/0001_settings.sql": "BEGIN;\nINSERT INTO settings VALUES ('x') "
            "ON CONFLICT DO NOTHING;\nCOMMIT;\n",
        }
    )
    with pytest.raises(AssertionError) as failure:
        assert_round_trip(sqlrunner_empty_dsn, sql)
    message = str(failure.value)
    assert "re-apply after rollback differs" in message
    assert "+public | accounts | legacy_flag | boolean" in message


def test_round_trip_refuses_a_database_already_migrated(sqlrunner_dsn: str, sql_dir: Path) -> None:
    with pytest.raises(AssertionError, match="0002_llm_management is applied"):
        assert_round_trip(sqlrunner_dsn, sql_dir)


def test_rerun_safe_names_a_statement_that_fails_the_second_time(
    sqlrunner_empty_dsn: str, write_sql: WriteSql
) -> None:
    sql = write_sql(
        {
            "forward/0001_baseline.sql": BASELINE,
            "forward/0002_name_idx.sql": "-- sqlrunner: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_id_idx ON accounts (id);\n"
            "CREATE INDEX CONCURRENTLY accounts_name_idx ON accounts (name);\n",
        }
    )
    with pytest.raises(AssertionError) as failure:
        assert_rerun_safe(sqlrunner_empty_dsn, sql)
    message = str(failure.value)
    assert "0002_name_idx.sql" in message and "DuplicateTable" in message
    assert "accounts_name_idx" in message


def test_rerun_safe_catches_a_rerun_that_changes_the_schema(
    sqlrunner_empty_dsn: str, write_sql: WriteSql
) -> None:
    sql = write_sql(
        {
            "forward/0001_baseline.sql": BASELINE,
            "forward/0002_validate.sql": "-- sqlrunner: no-transaction\n"
            "DROP INDEX CONCURRENTLY IF EXISTS accounts_name_idx;\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_name_idx ON accounts (name);\n"
            # Each run renames the index it finds: the second run leaves another schema.
            "DO $$ BEGIN IF to_regclass('accounts_name_old') IS NULL THEN"
            " ALTER INDEX accounts_name_idx RENAME TO accounts_name_old; END IF; END $$;\n",
        }
    )
    with pytest.raises(AssertionError) as failure:
        assert_rerun_safe(sqlrunner_empty_dsn, sql)
    message = str(failure.value)
    assert "0002_validate.sql run twice differs" in message
    assert "accounts_name_idx" in message


def test_loader_migrates_pytest_postgresql_template(
    pytester: pytest.Pytester, outer_dsn: str, sql_dir: Path
) -> None:
    params = psycopg.conninfo.conninfo_to_dict(outer_dsn)
    pytester.makeconftest(
        f"""
        from pytest_postgresql import factories
        from sqlrunner.testing import loader

        pg_noproc = factories.postgresql_noproc(
            host={params.get("host", "localhost")!r}, port={params.get("port", 5432)!r},
            user={params.get("user", "postgres")!r}, password={params.get("password")!r},
            dbname="app_tests", load=[loader({str(sql_dir)!r})],
        )
        postgresql = factories.postgresql("pg_noproc")
        """
    )
    pytester.makepyfile(
        test_app="""
        def test_migrated(postgresql):
            rules = postgresql.execute("SELECT count(*) FROM tier_model_rules").fetchone()[0]
            assert rules > 0
            versions = postgresql.execute(
                "SELECT version FROM sqlrunner_ledger WHERE kind = 'forward' ORDER BY 1")
            assert [v for (v,) in versions] == [1, 2, 3, 4]

        def test_isolated(postgresql):
            assert postgresql.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0
            postgresql.execute("INSERT INTO audit_log (action) VALUES ('x')")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
