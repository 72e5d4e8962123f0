"""The everyday surface (issue 12): each fact once, signals, the embedded server's
messages, server NOTICEs and WARNINGs, editor leftovers, new and init.

In process through click's CliRunner unless a real process is the point
(signals, exit codes as the shell sees them, warnings printed at import).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from .clirun import invoke, run_process
from .conftest import SqlSet, spawn

ITEMS = "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\nCOMMIT;\n"
DROP_ITEMS = "BEGIN;\nDROP TABLE items;\nCOMMIT;\n"
SLOW = "BEGIN;\nCREATE TABLE slow (id int);\nSELECT pg_sleep(30);\nCOMMIT;\n"


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


# --- 2. each fact once ---------------------------------------------------------------------


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"]])
def test_each_applied_file_is_named_once_across_stdout_and_stderr(
    dsn: str, sql_set: SqlSet, verbosity: list[str]
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS, "rollback/0001_items.sql": DROP_ITEMS})
    applied = invoke("--dsn", dsn, "--sql-dir", str(root), *verbosity, "apply")
    assert applied.code == 0, applied.output
    assert applied.output.count("applied forward/0001_items.sql") == 1, applied.output
    assert "applied 1 migration(s)" in applied.stdout
    rolled = invoke("--dsn", dsn, "--sql-dir", str(root), *verbosity, "rollback")
    assert rolled.code == 0, rolled.output
    assert rolled.output.count("rolled back rollback/0001_items.sql") == 1, rolled.output


def test_verbose_adds_detail_and_very_verbose_adds_each_statement(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS, "rollback/0001_items.sql": DROP_ITEMS})
    plain = invoke("--dsn", dsn, "--sql-dir", str(root), "apply")
    invoke("--dsn", dsn, "--sql-dir", str(root), "rollback")
    detailed = invoke("--dsn", dsn, "--sql-dir", str(root), "-vv", "apply")
    assert "[1 statements]" not in plain.output and "[1 statements]" in detailed.stderr
    assert "forward/0001_items.sql:2: CREATE TABLE items" in detailed.stderr
    assert "forward/0001_items.sql:2:" not in plain.output


def test_quiet_prints_nothing_on_success_and_only_the_error_on_failure(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})
    ok = invoke("--dsn", dsn, "--sql-dir", str(root), "-q", "apply")
    assert (ok.code, ok.stdout, ok.stderr) == (0, "", "")
    (root / "forward" / "0002_bad.sql").write_text("BEGIN;\nSELECT 1/0;\nCOMMIT;\n")
    failed = invoke("--dsn", dsn, "--sql-dir", str(root), "-q", "apply")
    assert failed.code == 4 and failed.stdout == ""
    assert failed.stderr.splitlines() == failed.errors and len(failed.errors) == 1


def test_a_dry_run_still_lists_what_would_run(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})
    run = invoke("--dsn", dsn, "--sql-dir", str(root), "apply", "--dry-run")
    assert run.code == 0 and "would apply forward/0001_items.sql" in run.stdout


# --- 3. no third-party warnings; 6. stop-embedded tells the truth ---------------------------


def no_runtime_dir() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}


def test_no_platformdirs_warning_without_xdg_runtime_dir(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sqlrunner", "stop-embedded"],
        capture_output=True,
        text=True,
        env=no_runtime_dir(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "XDG_RUNTIME_DIR" not in done.stderr
    assert done.stdout.strip() == "no embedded PostgreSQL running here"


def test_stop_embedded_after_a_killed_server_says_nothing_was_running(tmp_path: Path) -> None:
    """A postmaster.pid whose process is gone (the server was SIGKILLed) is not a server:
    before, stop-embedded started one just to stop it and reported success."""
    pgdata = tmp_path / ".sqlrunner" / "pgdata"
    pgdata.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (pgdata / "postmaster.pid").write_text(
        f"{dead.pid}\n{pgdata}\n1700000000\n5999\n{pgdata}\n127.0.0.1\n  5999001  1\nready   \n"
    )
    run = run_process("stop-embedded", cwd=tmp_path, env=no_runtime_dir())
    assert run.code == 0, run.output
    assert "no embedded PostgreSQL running here" in run.stdout
    assert f"pid {dead.pid}" in run.stdout and "killed" in run.stdout
    assert not (pgdata / "PG_VERSION").exists()  # nothing was initialised or started


# --- 5. signals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "code", "words"),
    [
        (signal.SIGTERM, 143, "terminated (SIGTERM): a transactional file in progress"),
        (signal.SIGINT, 130, "interrupted: a transactional file in progress"),
    ],
)
def test_a_signal_prints_one_line_exits_its_code_and_rolls_back(
    dsn: str, sql_set: SqlSet, signum: int, code: int, words: str
) -> None:
    root = sql_set({"forward/0001_slow.sql": SLOW})
    runner = spawn("--sql-dir", str(root), "apply", dsn=dsn)
    deadline = time.monotonic() + 20
    with psycopg.connect(dsn, autocommit=True) as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
        ).fetchone() != (1,):
            assert time.monotonic() < deadline, "the migration never reached its sleep"
            time.sleep(0.05)
    runner.send_signal(signum)
    stdout, stderr = runner.communicate(timeout=20)
    assert runner.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("target:")]
    assert len(lines) == 1 and lines[0].startswith("sqlrunner: error: " + words), stderr
    assert stdout == ""
    assert "slow" not in tables(dsn)
    status = invoke("--dsn", dsn, "--sql-dir", str(root), "status")
    assert "pending  forward/0001_slow" in status.stdout  # as after Ctrl-C: runs whole next time


# --- 8. new never writes into the installed package; init ----------------------------------


def shipped_files() -> set[Path]:
    import sqlrunner.api

    root = sqlrunner.api.resolve_sql_dir(None)  # run from the repo: the shipped set
    return set(root.rglob("*"))


def test_new_without_a_local_sql_dir_refuses_and_writes_nothing(tmp_path: Path) -> None:
    before = shipped_files()
    run = invoke("new", "add_notes", cwd=tmp_path)
    assert run.code == 2 and len(run.errors) == 1, run.output
    assert "sqlrunner init" in run.errors[0]
    assert shipped_files() == before and not (tmp_path / "sql").exists()


def test_init_creates_the_skeleton_and_new_fills_it(tmp_path: Path) -> None:
    first = invoke("init", cwd=tmp_path)
    assert first.code == 0, first.output
    for kind in ("forward", "rollback", "seed", "verify"):
        assert (tmp_path / "sql" / kind / ".gitkeep").is_file()
    again = invoke("init", cwd=tmp_path)
    assert again.code == 0 and "nothing to create" in again.stdout
    made = invoke("--json", "new", "add_notes", cwd=tmp_path)
    assert made.code == 0, made.output
    assert json.loads(made.stdout)["paths"] == [
        "sql/forward/0001_add_notes.sql",
        "sql/rollback/0001_add_notes.sql",
    ]
    check = invoke("--sql-dir", str(tmp_path / "sql"), "status", "--dsn", "host=/nonexistent")
    assert "unknown file" not in check.output  # .gitkeep is not a migration


@pytest.mark.parametrize("flags", [[], ["--no-transaction"]])
def test_the_new_template_passes_squawk_and_names_only_docs_that_ship(
    tmp_path: Path, flags: list[str]
) -> None:
    invoke("init", cwd=tmp_path)
    invoke("new", "add_notes", *flags, cwd=tmp_path)
    files = sorted((tmp_path / "sql").rglob("0001_add_notes.sql"))
    squawk = shutil.which("squawk") or str(Path(sys.executable).with_name("squawk"))
    done = subprocess.run([squawk, *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in files:
        named = set(re.findall(r"\b[A-Z_]+\.md\b", path.read_text()))
        assert named <= {"README.md"}, named  # README ships as the package's description


# --- 4. server messages shown ----------------------------------------------------------------

WARNS = (
    "BEGIN;\nCREATE TABLE t (id int);\n"
    "DO $$BEGIN RAISE WARNING 'backfill t by hand'; END$$;\n"
    "DROP TABLE IF EXISTS never_there;\nCOMMIT;\n"
)


def test_raise_warning_and_notices_are_shown_at_their_file_and_line(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_t.sql": WARNS})
    run = invoke("--dsn", dsn, "--sql-dir", str(root), "apply")
    assert run.code == 0, run.output
    lines = run.stderr.splitlines()
    assert "forward/0001_t.sql:3: WARNING: backfill t by hand" in lines
    assert 'forward/0001_t.sql:4: NOTICE: table "never_there" does not exist, skipping' in lines
    quiet = invoke("--dsn", dsn, "--sql-dir", str(root), "-q", "apply")
    assert "WARNING" not in quiet.output


def test_server_messages_are_logged_in_library_mode(
    dsn: str, sql_set: SqlSet, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlrunner

    root = sql_set({"forward/0001_t.sql": WARNS})
    with caplog.at_level(logging.INFO, logger="sqlrunner"):
        sqlrunner.apply(dsn, root)
    warned = [r for r in caplog.records if "backfill t by hand" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert warned[0].getMessage() == "forward/0001_t.sql:3: WARNING: backfill t by hand"
