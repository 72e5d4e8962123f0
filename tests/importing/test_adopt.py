"""adopt: another tool's ledger, created with that tool's own DDL, taken over through the
mapping; each refusal the issue lists; baseline and mark-applied ranges."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest

import sqlrunner
from sqlrunner.adopt import adopt, mark_applied, parse_versions
from sqlrunner.baseline import baseline
from sqlrunner.errors import AdoptionRefused, UsageError
from sqlrunner.importing import flyway_checksum, import_from
from tests.conftest import write_files

from .conftest import RunPsql
from .oldtools import flyway_rows, migrate_with_old_tool, sqitch_rows
from .sets import SETS


def _migrated_by(
    tool: str, dsn: str, tmp_path: Path, run_psql: RunPsql, rows: str | None = None
) -> tuple[Path, Path]:
    """The database as the old tool left it (its schema, its ledger); the imported sql/ dir."""
    src = write_files(tmp_path / "src", SETS[tool])
    migrate_with_old_tool(tool, dsn, src, tmp_path, run_psql, rows)
    sql_dir = tmp_path / "sql"
    import_from(tool, src, sql_dir)
    return src, sql_dir


def _history(dsn: str, action: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT kind, version, detail FROM sqlrunner_ledger_history WHERE action = %s "
            "ORDER BY id",
            (action,),
        ).fetchall()


@pytest.mark.parametrize("tool", sorted(SETS))
def test_adopt_marks_what_the_old_tool_applied_and_apply_then_has_nothing_to_do(
    tool: str, dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    _src, sql_dir = _migrated_by(tool, dsn, tmp_path, run_psql)
    report = adopt(dsn, sql_dir, tool=tool)
    forward = len(list((sql_dir / "forward").glob("*.sql")))
    assert len([label for label in report.marked if label]) >= forward
    assert sqlrunner.status(dsn, sql_dir).up_to_date
    assert not sqlrunner.apply(dsn, sql_dir).applied
    history = _history(dsn, "adopt")
    assert next(h for h in history if h[0] == "forward")[2].startswith(f"adopted from {tool} ")
    assert adopt(dsn, sql_dir, tool=tool).marked == ()  # a second adopt changes nothing
    with psycopg.connect(dsn) as conn:  # the old ledger is only read
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname IN "
            "('schema_migrations', 'flyway_schema_history', 'changes', "
            "'__diesel_schema_migrations', 'goose_db_version', 'schema_migration')"
        ).fetchone() == (1,)


def test_goose_rollback_rows_leave_that_version_pending(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    rows = (
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES "
        "(0, true), (1, true), (2, true), (3, true), (3, false)"
    )
    _src, sql_dir = _migrated_by("goose", dsn, tmp_path, run_psql, rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE audit_events")  # what goose down did
    assert adopt(dsn, sql_dir, tool="goose").marked == (
        "0001_create_users",
        "0002_add_username_index",
    )
    assert [f.version for f in sqlrunner.status(dsn, sql_dir).pending] == [3]
    assert [r.version for r in sqlrunner.apply(dsn, sql_dir).applied] == [3]


def test_golang_migrate_version_marks_everything_up_to_it(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    _src, sql_dir = _migrated_by(
        "golang-migrate", dsn, tmp_path, run_psql, "INSERT INTO schema_migrations VALUES (5, false)"
    )
    report = adopt(dsn, sql_dir, tool="golang-migrate")
    assert report.marked[0] == "0001_create_users_table" and len(report.marked) == 5


def _refused(dsn: str, sql_dir: Path, tool: str, *words: str) -> None:
    with pytest.raises(AdoptionRefused) as caught:
        adopt(dsn, sql_dir, tool=tool)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    files = sqlrunner.status(dsn, sql_dir).files  # nothing was marked
    assert files
    assert all(f.state == "pending" for f in files)


def test_adopt_refuses_golang_migrate_dirty_version(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    _src, sql_dir = _migrated_by(
        "golang-migrate", dsn, tmp_path, run_psql, "INSERT INTO schema_migrations VALUES (3, true)"
    )
    _refused(dsn, sql_dir, "golang-migrate", "dirty", "migrate force 3")


def test_adopt_refuses_a_failed_flyway_row(dsn: str, tmp_path: Path, run_psql: RunPsql) -> None:
    src = write_files(tmp_path / "src", SETS["flyway"])
    _src, sql_dir = _migrated_by("flyway", dsn, tmp_path, run_psql, flyway_rows(src, v2_ok=False))
    _refused(dsn, sql_dir, "flyway", "failed migration V2__account_name_index.sql", "flyway repair")


def test_adopt_refuses_a_flyway_checksum_the_file_no_longer_matches(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    src = write_files(tmp_path / "src", SETS["flyway"])
    rows = flyway_rows(src, status_checksum="123456789")
    _src, sql_dir = _migrated_by("flyway", dsn, tmp_path, run_psql, rows)
    _refused(dsn, sql_dir, "flyway", "checksum 123456789 for 1.1", "V1_1__add_account_status.sql")


def test_adopt_refuses_a_version_the_mapping_lacks(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    rows = (
        "INSERT INTO schema_migrations (version) VALUES ('20230101120000'), ('20230102090000'), "
        "('20230103000000'), ('20230104000000'), ('20991231000000')"
    )
    _src, sql_dir = _migrated_by("dbmate", dsn, tmp_path, run_psql, rows)
    _refused(dsn, sql_dir, "dbmate", "20991231000000", "mapping lacks")


def test_adopt_refuses_a_sqitch_script_hash_the_deploy_file_no_longer_matches(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    src = write_files(tmp_path / "src", SETS["sqitch"])
    rows = sqitch_rows(src).replace(
        hashlib.sha1((src / "deploy" / "appschema.sql").read_bytes()).hexdigest(), "f" * 40
    )
    _src, sql_dir = _migrated_by("sqitch", dsn, tmp_path, run_psql, rows)
    _refused(dsn, sql_dir, "sqitch", "appschema", "f" * 40)


def test_adopt_without_an_import_says_to_import_first(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "sql" / "forward").mkdir(parents=True)
    with pytest.raises(UsageError, match="sqlrunner import --from TOOL SRC"):
        adopt(dsn, tmp_path / "sql", tool="dbmate")


BASELINE_SET = {
    "forward/0001_schema.sql": """\
BEGIN;
CREATE SCHEMA shop;
CREATE TYPE shop.state AS ENUM ('open', 'paid');
CREATE TABLE shop.orders (id bigserial PRIMARY KEY, state shop.state NOT NULL);
CREATE FUNCTION shop.order_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM shop.orders $$;
COMMIT;
""",
    "forward/0002_notes.sql": """\
BEGIN;
ALTER TABLE shop.orders ADD COLUMN note text;
CREATE INDEX orders_state_idx ON shop.orders (state);
CREATE TABLE shop.scratch (id int);
DROP TABLE shop.scratch;
COMMIT;
""",
    "forward/0003_view.sql": (
        "BEGIN;\nCREATE VIEW shop.open_orders AS SELECT * FROM shop.orders "
        "WHERE state = 'open';\nCOMMIT;\n"
    ),
}


def _hand_built(dsn: str, root: Path, run_psql: RunPsql, upto: int) -> Path:
    sql_dir = write_files(root / "sql", BASELINE_SET)
    for path in sorted((sql_dir / "forward").glob("*.sql"))[:upto]:
        run_psql(dsn, path, root)
    return sql_dir


def test_baseline_marks_a_hand_built_schema_and_apply_runs_the_rest(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _hand_built(dsn, tmp_path, run_psql, upto=2)
    assert baseline(dsn, 2, sql_dir).marked == ("0001_schema", "0002_notes")
    assert [r.version for r in sqlrunner.apply(dsn, sql_dir).applied] == [3]
    assert [h[1] for h in _history(dsn, "baseline") if h[0] == "forward"] == [1, 2]


def test_baseline_refuses_when_objects_the_files_create_are_missing(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _hand_built(dsn, tmp_path, run_psql, upto=1)
    with pytest.raises(AdoptionRefused) as caught:
        baseline(dsn, 3, sql_dir)
    message = str(caught.value)
    assert "column shop.orders column note does not exist" in message
    assert "relation shop.orders_state_idx" in message and "shop.open_orders" in message
    assert "scratch" not in message  # created and dropped again below V
    assert sqlrunner.status(dsn, sql_dir).pending  # nothing marked


def test_baseline_refuses_a_database_that_has_a_ledger(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _hand_built(dsn, tmp_path, run_psql, upto=0)
    sqlrunner.apply(dsn, sql_dir, to=1)
    with pytest.raises(AdoptionRefused, match="repair --mark-applied"):
        baseline(dsn, 2, sql_dir)


def test_parse_versions_accepts_ranges_and_lists() -> None:
    assert parse_versions("1-3,7") == [1, 2, 3, 7]
    assert parse_versions("0042") == [42]
    for bad in ("3-1", "a", "1-", ""):
        with pytest.raises(UsageError):
            parse_versions(bad)


def test_mark_applied_range_records_each_version_in_one_run(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _hand_built(dsn, tmp_path, run_psql, upto=2)
    with pytest.raises(UsageError, match="no forward file with version 0009: nothing was marked"):
        mark_applied(dsn, parse_versions("1-2,9"), sql_dir)  # a version without a file
    assert all(f.state == "pending" for f in sqlrunner.status(dsn, sql_dir).files)
    report = mark_applied(dsn, parse_versions("1-2"), sql_dir)
    assert report.marked == ("0001_schema", "0002_notes")
    assert mark_applied(dsn, parse_versions("1-3"), sql_dir).already == (
        "0001_schema",
        "0002_notes",
    )
    with psycopg.connect(dsn) as conn:
        runs = conn.execute(
            "SELECT count(DISTINCT run_id) FROM sqlrunner_ledger_history "
            "WHERE action = 'mark-applied'"
        ).fetchone()
    assert runs == (2,)
    with pytest.raises(UsageError, match="no forward file with version 0009"):
        mark_applied(dsn, [9], sql_dir)


def test_converted_sqitch_verify_fails_where_the_sqitch_script_would_raise(
    dsn: str, tmp_path: Path
) -> None:
    src = write_files(tmp_path / "src", SETS["sqitch"])
    import_from("sqitch", src, tmp_path / "sql")
    report = sqlrunner.apply(dsn, tmp_path / "sql")
    assert report.verification is not None and report.verification.ok
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX flipr.users_nickname_lower_idx")  # 1/COUNT(*) now divides by 0
    with pytest.raises(sqlrunner.VerificationFailed, match="22012"):
        sqlrunner.verify(dsn, tmp_path / "sql")


def test_flyway_baseline_row_covers_every_version_up_to_it(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    src = write_files(tmp_path / "src", SETS["flyway"])
    v2 = flyway_checksum(src / "V2__account_name_index.sql")
    rows = (
        "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, "
        "checksum, installed_by, execution_time, success) VALUES "
        "(1, '1.1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'dba', 0, "
        f"true), (2, '2', 'account name index', 'SQL', 'V2__account_name_index.sql', {v2}, 'ci', 9, "
        "true)"
    )
    _src, sql_dir = _migrated_by("flyway", dsn, tmp_path, run_psql, rows)
    report = adopt(dsn, sql_dir, tool="flyway")
    assert report.marked == (
        "0001_create_accounts",
        "0002_add_account_status",
        "0003_account_name_index",
    )
    # the repeatable never ran under Flyway here: sqlrunner runs it as a seed
    assert [s.version for s in sqlrunner.apply(dsn, sql_dir).seeded] == [1]
