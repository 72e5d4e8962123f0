"""How options reach the commands: before or after the command, from env vars, refused up front.

Every refusal here is exit 2 with one ``sqlrunner: error:`` line, and the
database is left untouched. In process through click's CliRunner unless a
real process is the point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .clirun import Run, invoke, run_process
from .conftest import SqlSet

ITEMS = "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\nCOMMIT;\n"
BROKEN = "BEGIN;\nCREATE TABLE report (id int);\nSELECT 1/0;\nCOMMIT;\n"


def relations(dsn: str) -> list[Any]:
    """What a run could have created: every relation outside the system schemas."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
        ).fetchall()


def refused(run: Run, *fragments: str, code: int = 2) -> str:
    assert run.code == code, run.output
    assert "Traceback" not in run.output
    assert len(run.errors) == 1, run.stderr
    for fragment in fragments:
        assert fragment in run.errors[0], run.errors[0]
    return run.errors[0]


# --- placement: before or after the command ------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--dsn", "{dsn}", "--sql-dir", "{sql}", "--json", "status"],
        ["status", "--dsn", "{dsn}", "--sql-dir", "{sql}", "--json"],
        ["--json", "status", "--dsn={dsn}", "--sql-dir={sql}"],
        ["--sql-dir", "{sql}", "status", "--json", "--dsn", "{dsn}"],
    ],
)
def test_global_options_work_before_or_after_the_command(
    dsn: str, sql_set: SqlSet, argv: list[str]
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke(*(a.format(dsn=dsn, sql=root) for a in argv))

    assert run.code == 0, run.output
    document = json.loads(run.stdout)
    assert [(f["version"], f["state"]) for f in document["files"]] == [(1, "pending")]


def test_ledger_names_after_the_command_reach_the_run(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("apply", "--dsn", dsn, "--sql-dir", str(root), "--ledger-schema", "ops", "-q")

    assert run.code == 0, run.output
    assert run.stdout == ""  # -q after the command counts too
    assert ("ops", "sqlrunner_ledger") in relations(dsn)
    assert ("public", "sqlrunner_ledger") not in relations(dsn)


def test_verbosity_adds_up_before_and_after_the_command(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("-v", "--dsn", dsn, "apply", "-v", "--sql-dir", str(root))

    assert run.code == 0, run.output
    # -vv: every statement, shown once by the progress printer (issue 12.2: no log copy)
    assert "forward/0001_items.sql:2: CREATE TABLE items" in run.stderr
    assert "sqlrunner: applied" not in run.stderr


def test_a_value_after_the_command_wins_over_one_before_it(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--dsn", "host=/nonexistent", "status", "--dsn", dsn, "--sql-dir", str(root))

    assert run.code == 0, run.output


# --- environment variables -----------------------------------------------------------------


def test_options_come_from_sqlrunner_env_vars(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke(
        "status",
        env={"SQLRUNNER_DSN": dsn, "SQLRUNNER_SQL_DIR": str(root), "SQLRUNNER_JSON": "1"},
    )

    assert run.code == 0, run.output
    assert json.loads(run.stdout)["report"] == "status"


def test_a_flag_beats_its_env_var(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke(
        "status",
        "--dsn",
        dsn,
        env={"SQLRUNNER_DSN": "host=/nonexistent", "SQLRUNNER_SQL_DIR": str(root)},
    )

    assert run.code == 0, run.output


def test_database_url_keeps_working(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--sql-dir", str(root), "apply", env={"DATABASE_URL": dsn})

    assert run.code == 0, run.output
    assert ("public", "items") in relations(dsn)


def test_a_lock_option_comes_from_its_env_var_and_is_checked_the_same(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--dsn", dsn, "--sql-dir", str(root), "apply", env={"SQLRUNNER_LOCK_TIMEOUT": "0"})

    refused(run, "SQLRUNNER_LOCK_TIMEOUT", "at least 1ms")
    assert relations(dsn) == []


@pytest.mark.parametrize("name", ["DATABASE_URL", "SQLRUNNER_DSN"])
def test_an_empty_database_url_is_an_error_not_the_embedded_server(
    tmp_path: Path, sql_set: SqlSet, name: str
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--sql-dir", str(root), "status", env={name: ""}, cwd=tmp_path)

    refused(run, f"{name} is set but empty")
    assert "embedded" not in run.output
    assert not (tmp_path / ".sqlrunner").exists()


def test_an_empty_dsn_flag_is_an_error(tmp_path: Path, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--dsn", "", "--sql-dir", str(root), "status", cwd=tmp_path)

    refused(run, "--dsn is empty")
    assert not (tmp_path / ".sqlrunner").exists()


def test_help_names_the_env_vars() -> None:
    group = invoke("--help")
    apply = invoke("apply", "--help")

    assert group.code == apply.code == 0
    for name in ("SQLRUNNER_DSN", "DATABASE_URL", "SQLRUNNER_SQL_DIR", "SQLRUNNER_LEDGER_TABLE"):
        assert name in group.stdout
    for name in ("SQLRUNNER_LOCK_TIMEOUT", "SQLRUNNER_LOCK_RETRIES", "SQLRUNNER_RUNNER_WAIT"):
        assert name in apply.stdout
    assert "work here too" in apply.stdout  # the global options, accepted after the command


# --- click's own help: did you mean, completion -------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("stauts",), ("No such command 'stauts'", "Did you mean 'status'?")),
        (("apply", "--dry-rnu"), ("--dry-rnu", "--dry-run")),
    ],
    ids=["command", "option"],
)
def test_a_mistyped_command_or_option_gets_did_you_mean(
    argv: tuple[str, ...], words: tuple[str, ...]
) -> None:
    refused(invoke(*argv), *words)


def test_bash_completion_script_and_answers() -> None:
    script = invoke(env={"_SQLRUNNER_COMPLETE": "bash_source"})
    words = invoke(
        env={
            "_SQLRUNNER_COMPLETE": "bash_complete",
            "COMP_WORDS": "sqlrunner st",
            "COMP_CWORD": "1",
        }
    )

    assert script.code == 0 and "complete -o nosort -F" in script.stdout
    assert words.code == 0
    assert {"plain,status", "plain,stop-embedded"} <= set(words.stdout.split())


def test_a_click_usage_error_in_json_mode_is_one_error_document() -> None:
    run = invoke("--json", "apply", "--no-such-option")

    refused(run, "--no-such-option")
    document = json.loads(run.stdout)
    assert (document["report"], document["exit_code"], document["error"]) == (
        "error",
        2,
        "UsageError",
    )


# --- 9.17: input refused up front ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("apply", "--runner-wait", "nan"), "--runner-wait"),
        (("apply", "--runner-wait", "inf"), "--runner-wait"),
        (("apply", "--runner-wait", "-1"), "--runner-wait"),
        (("apply", "--wait", "nan"), "--wait"),
        (("status", "--wait", "-5"), "--wait"),
        (("seed", "--runner-wait", "1e300"), "--runner-wait"),
        (("apply", "--lock-timeout", "2147483648"), "longest lock_timeout"),
        (("apply", "--lock-timeout", "100000min"), "longest lock_timeout"),
        (("rollback", "--lock-timeout", "soon"), "--lock-timeout"),
        (("apply", "--lock-retries", "-1"), "--lock-retries"),
        (("--ledger-schema", "", "apply"), "--ledger-schema"),
        (("--ledger-schema", "s" * 64, "status"), "1 to 63 bytes"),
        (("--ledger-schema", "é" * 32, "status"), "1 to 63 bytes"),  # 64 bytes in UTF-8
        (("apply", "--ledger-table", ""), "--ledger-table"),
        (("apply", "--ledger-table", "t" * 55), "1 to 54 bytes"),  # + "_progress" > 63
        (("--ledger-table", "a\x00b", "status"), "without NUL"),
    ],
)
def test_bad_values_are_refused_before_connecting(
    dsn: str, sql_set: SqlSet, args: tuple[str, ...], fragment: str
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--dsn", dsn, "--sql-dir", str(root), *args)

    refused(run, fragment)
    assert "target:" not in run.stderr  # refused before anything was connected to
    assert relations(dsn) == []


def test_the_longest_names_postgres_keeps_are_accepted(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})
    schema, table = "s" * 63, "t" * 54

    run = invoke(
        "--dsn",
        dsn,
        "--sql-dir",
        str(root),
        "--ledger-schema",
        schema,
        "--ledger-table",
        table,
        "apply",
    )

    assert run.code == 0, run.output
    assert {(schema, table), (schema, table + "_history"), (schema, table + "_progress")} <= set(
        relations(dsn)
    )


def test_new_with_a_name_too_long_for_a_file_name_is_refused(sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--sql-dir", str(root), "new", "x" * 300)

    line = refused(run, "300 characters", "255-byte file name")
    assert "x" * 100 not in line
    assert sorted(p.name for p in root.rglob("*.sql")) == ["0001_items.sql"]


def test_new_with_the_longest_name_writes_the_pair(sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})

    run = invoke("--sql-dir", str(root), "new", "x" * 200)

    assert run.code == 0, run.output
    assert (root / "forward" / f"0002_{'x' * 200}.sql").is_file()


# --- 10.9: the --json error document of a SQL error ----------------------------------------


def test_a_sql_error_document_has_file_line_column_sqlstate_message(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_report.sql": BROKEN})

    run = invoke("--dsn", dsn, "--json", "apply", cwd=root.parent)  # ./sql is the default

    refused(run, "division by zero", code=4)
    document = json.loads(run.stdout)
    assert {k: document[k] for k in ("exit_code", "file", "line", "column", "sqlstate")} == {
        "exit_code": 4,
        "file": "sql/forward/0001_report.sql",  # relative to the current directory
        "line": 3,
        "column": 1,
        "sqlstate": "22012",
    }
    assert document["sql_message"] == "division by zero"
    assert document["statement"].startswith("SELECT 1/0")
    assert document["message"] == run.errors[0].removeprefix("sqlrunner: error: ")


def test_a_sql_error_outside_the_current_directory_is_named_from_the_sql_dir(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    root = sql_set({"forward/0001_report.sql": BROKEN})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    run = invoke("--dsn", dsn, "--sql-dir", str(root), "--json", "apply", cwd=elsewhere)

    document = json.loads(run.stdout)
    assert (document["file"], document["line"], document["sqlstate"]) == (
        "forward/0001_report.sql",
        3,
        "22012",
    )


# --- a real process: exit codes as the shell sees them -------------------------------------


def test_a_usage_error_in_a_real_process_exits_2_with_one_line(dsn: str) -> None:
    run = run_process("status", "--dsn", dsn, "--no-such-option")

    refused(run, "No such option '--no-such-option'", "sqlrunner status --help")
    assert run.stdout == ""
