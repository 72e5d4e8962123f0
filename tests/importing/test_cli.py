"""The import / adopt / baseline commands, in process through click's CliRunner."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

import sqlrunner
from sqlrunner.cli import cli
from tests.conftest import write_files

from ..integration.clirun import invoke
from ..integration.conftest import spawn
from .conftest import RunPsql
from .sets import SETS
from .test_adopt import _migrated_by


def dbmate_set(root: Path) -> Path:
    source = root / "db" / "migrations"
    source.mkdir(parents=True)
    (source / "20240101000000_a.sql").write_text(
        "-- migrate:up\nCREATE TABLE a (id int)\n\n-- migrate:down\nDROP TABLE a;\n"
    )
    return source


def test_import_then_baseline_marks_the_hand_built_schema(tmp_path: Path, dsn: str) -> None:
    runner = CliRunner()
    dest = tmp_path / "sql"
    imported = runner.invoke(
        cli, ["--sql-dir", str(dest), "import", "--from", "dbmate", str(dbmate_set(tmp_path))]
    )
    assert imported.exit_code == 0, imported.output
    assert (dest / "forward" / "0001_a.sql").read_text().rstrip().endswith("COMMIT;")
    assert "added the last ';'" in imported.output
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id int)")
    marked = runner.invoke(cli, ["--dsn", dsn, "--sql-dir", str(dest), "baseline", "1"])
    assert marked.exit_code == 0, marked.output
    assert "marked applied 0001_a" in marked.output
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version FROM sqlrunner_ledger WHERE kind = 'forward'")
        assert rows.fetchall() == [(1,)]


def test_baseline_refuses_a_database_without_the_schema(tmp_path: Path, dsn: str) -> None:
    runner = CliRunner()
    dest = tmp_path / "sql"
    source = str(dbmate_set(tmp_path))
    runner.invoke(cli, ["--sql-dir", str(dest), "import", "--from", "dbmate", source])
    refused = runner.invoke(cli, ["--dsn", dsn, "--sql-dir", str(dest), "baseline", "1"])
    assert refused.exit_code == 2, refused.output
    assert "a" in refused.output and "error" in refused.output


# --- repair --mark-applied with ranges and lists --------------------------------------------

HAND_SET = {
    f"forward/{v:04d}_t{v}.sql": f"BEGIN;\nCREATE TABLE t{v} (id int);\nCOMMIT;\n"
    for v in range(1, 6)
}


def _by_hand(dsn: str, tmp_path: Path, run_psql: RunPsql, upto: int) -> Path:
    """A set whose first ``upto`` files a DBA ran with psql, leaving no ledger row."""
    sql_dir = write_files(tmp_path / "sql", HAND_SET)
    for path in sorted((sql_dir / "forward").glob("*.sql"))[:upto]:
        run_psql(dsn, path, tmp_path)
    return sql_dir


def _rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def _ledger(dsn: str) -> list[tuple[object, ...]]:
    if _rows(dsn, "SELECT to_regclass('sqlrunner_ledger')") == [(None,)]:
        return []
    return _rows(dsn, "SELECT kind, version FROM sqlrunner_ledger ORDER BY kind, version")


def test_repair_mark_applied_range_records_every_file_in_one_transaction(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _by_hand(dsn, tmp_path, run_psql, upto=3)
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "repair", "--mark-applied", "1-3")
    assert run.code == 0 and not run.errors, run.output
    assert "mark-applied 0003_t3: recorded in the ledger and its history" in run.stdout
    assert _ledger(dsn) == [("forward", 1), ("forward", 2), ("forward", 3)]
    # one transaction: every ledger and history row was written by the same xid
    assert _rows(
        dsn,
        "SELECT count(DISTINCT xmin::text) FROM (SELECT xmin FROM sqlrunner_ledger UNION ALL "
        "SELECT xmin FROM sqlrunner_ledger_history WHERE action = 'mark-applied') AS r",
    ) == [(1,)]
    history = _rows(
        dsn,
        "SELECT version, detail FROM sqlrunner_ledger_history WHERE action = 'mark-applied' "
        "AND kind = 'forward' ORDER BY version",
    )
    assert [v for v, _ in history] == [1, 2, 3]
    assert all("repair --mark-applied" in str(d) for _, d in history)
    assert [r.version for r in sqlrunner.apply(dsn, sql_dir).applied] == [4, 5]


def test_repair_mark_applied_list_skips_what_is_applied_and_says_so(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _by_hand(dsn, tmp_path, run_psql, upto=0)
    sqlrunner.apply(dsn, sql_dir, to=1)
    for path in sorted((sql_dir / "forward").glob("*.sql"))[1:]:
        run_psql(dsn, path, tmp_path)
    run = invoke(
        "--json", "--dsn", dsn, "--sql-dir", str(sql_dir), "repair", "--mark-applied", "1,3,4-5"
    )
    assert run.code == 0, run.output
    document = json.loads(run.stdout)
    assert document["marked"] == ["0003_t3", "0004_t4", "0005_t5"]
    assert document["already"] == ["0001_t1"]
    assert "already applied 0001_t1: left as it was" in run.stderr
    assert [f.version for f in sqlrunner.status(dsn, sql_dir).pending] == [2]


def test_repair_mark_applied_refuses_versions_without_a_forward_file(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _by_hand(dsn, tmp_path, run_psql, upto=5)
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "repair", "--mark-applied", "1-42,50")
    assert run.code == 2, run.output
    assert run.errors == [
        "sqlrunner: error: no forward file with version 0006-0042, 0050: nothing was marked"
    ]
    assert _ledger(dsn) == []  # refused before connecting: no ledger created


@pytest.mark.parametrize("spec", ["3-1", "1-", "a", "1,,2", ""])
def test_repair_mark_applied_refuses_a_bad_list_in_one_line(
    spec: str, dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    sql_dir = _by_hand(dsn, tmp_path, run_psql, upto=0)
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "repair", "--mark-applied", spec)
    assert run.code == 2, run.output
    assert len(run.errors) == 1 and "Traceback" not in run.output, run.output
    assert _ledger(dsn) == []


def test_repair_mark_applied_of_applied_files_only_is_refused(dsn: str, tmp_path: Path) -> None:
    sql_dir = write_files(tmp_path / "sql", HAND_SET)
    sqlrunner.apply(dsn, sql_dir, to=2)
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "repair", "--mark-applied", "1-2")
    assert run.code == 2, run.output
    assert len(run.errors) == 1 and "0001_t1.sql is already applied" in run.errors[0]
    assert _rows(
        dsn, "SELECT count(*) FROM sqlrunner_ledger_history WHERE action = 'mark-applied'"
    ) == [(0,)]


def test_repair_mark_applied_with_another_repair_is_refused(dsn: str, tmp_path: Path) -> None:
    sql_dir = write_files(tmp_path / "sql", HAND_SET)
    run = invoke(
        "--dsn", dsn, "--sql-dir", str(sql_dir), "repair", "--mark-applied", "1-2", "--forget", "3"
    )
    assert run.code == 2 and "exactly one of" in run.errors[0], run.output


SLOW = "BEGIN;\nCREATE TABLE t2 (id int);\nSELECT pg_sleep(2);\nCOMMIT;\n"


def test_repair_mark_applied_range_waits_for_a_running_apply_then_decides(
    dsn: str, tmp_path: Path
) -> None:
    """Under the runner lock: it waits for the run, then sees what that run applied."""
    sql_dir = write_files(tmp_path / "sql", {**HAND_SET, "forward/0002_t2.sql": SLOW})
    sqlrunner.apply(dsn, sql_dir, to=1)
    run = spawn("--sql-dir", str(sql_dir), "apply", "--to", "2", dsn=dsn)
    try:
        deadline = time.monotonic() + 20
        while not _rows(
            dsn,
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' "
            "AND pid <> pg_backend_pid()",
        ):
            assert time.monotonic() < deadline, "the run never reached 0002's pg_sleep"
            time.sleep(0.05)
        started = time.monotonic()
        marked = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "repair", "--mark-applied", "1-3")
        assert time.monotonic() - started > 0.5  # it waited for the run
        assert run.wait(timeout=30) == 0
    finally:
        run.kill()
        run.wait()
    assert marked.code == 0, marked.output
    assert "already applied 0002_t2: left as it was" in marked.stdout
    history = invoke("--json", "--dsn", dsn, "--sql-dir", str(sql_dir), "history").stdout
    assert json.loads(history)["rows"][0]["action"] == "mark-applied"
    assert _rows(
        dsn,
        "SELECT version FROM sqlrunner_ledger_history WHERE action = 'mark-applied' "
        "AND kind = 'forward'",
    ) == [(3,)]


# --- adopt and import as the shell sees them ------------------------------------------------


def test_adopt_then_status_has_nothing_pending(dsn: str, tmp_path: Path, run_psql: RunPsql) -> None:
    _src, sql_dir = _migrated_by("golang-migrate", dsn, tmp_path, run_psql)
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "adopt", "--from", "golang-migrate")
    assert run.code == 0 and not run.errors, run.output
    assert "marked applied 0005_create_settings" in run.stdout
    status = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "status", "--exit-code")
    assert status.code == 0, status.output


def test_adopt_refusal_is_one_line_exit_2_and_marks_nothing(
    dsn: str, tmp_path: Path, run_psql: RunPsql
) -> None:
    rows = "INSERT INTO schema_migrations VALUES (3, true)"
    _src, sql_dir = _migrated_by("golang-migrate", dsn, tmp_path, run_psql, rows)
    run = invoke("--dsn", dsn, "--sql-dir", str(sql_dir), "adopt", "--from", "golang-migrate")
    assert run.code == 2, run.output
    assert len(run.errors) == 1 and "dirty" in run.errors[0], run.stderr
    assert _ledger(dsn) == []


def test_import_with_todos_exits_1_and_lists_each_with_file_and_line(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", SETS["pop"])
    run = invoke("--sql-dir", str(tmp_path / "sql"), "import", "--from", "pop", str(src))
    assert run.code == 1, run.output
    assert f"{src / '20200103000000_create_gizmos.up.fizz'}:1: todo: " in run.stderr
