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
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from .clirun import invoke, run_process
from .conftest import SqlSet, sleeping_runner

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
        (
            signal.SIGTERM,
            143,
            "terminated (SIGTERM): a transactional file in progress was rolled back",
        ),
        (signal.SIGINT, 130, "interrupted: a transactional file in progress was rolled back"),
    ],
)
def test_a_signal_prints_one_line_exits_its_code_and_rolls_back(
    dsn: str, sql_set: SqlSet, signum: int, code: int, words: str
) -> None:
    root = sql_set({"forward/0001_slow.sql": SLOW})
    runner = sleeping_runner(root, dsn)
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


# --- 10. configuration: flag > env > file > default ----------------------------------------


def ledger_tables(dsn: str) -> set[str]:
    return {t for t in tables(dsn) if not t.endswith(("_history", "_progress", "_backfill"))} - {
        "items"
    }


def test_a_file_setting_is_used_an_env_var_beats_it_and_a_flag_beats_both(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    rerunnable = ITEMS.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")
    root = sql_set({"forward/0001_items.sql": rerunnable})  # runs once per ledger here
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.sqlrunner]\nledger-table = "from_file"\n'
        f'sql_dir = "{root}"\n'
    )
    assert invoke("--dsn", dsn, "apply", cwd=tmp_path).code == 0
    assert ledger_tables(dsn) == {"from_file"}
    env = {"SQLRUNNER_LEDGER_TABLE": "from_env"}
    assert invoke("--dsn", dsn, "status", cwd=tmp_path, env=env).code == 0
    assert invoke("--dsn", dsn, "apply", cwd=tmp_path, env=env).code == 0
    assert ledger_tables(dsn) == {"from_file", "from_env"}
    flag = invoke("--dsn", dsn, "apply", "--ledger-table", "from_flag", cwd=tmp_path, env=env)
    assert flag.code == 0, flag.output
    assert ledger_tables(dsn) == {"from_file", "from_env", "from_flag"}


def test_sqlrunner_toml_shows_in_help_and_in_config_with_each_source(tmp_path: Path) -> None:
    (tmp_path / "sqlrunner.toml").write_text('lock_timeout = "1s"\nlock_retries = 3\n')
    shown = invoke("apply", "--help", cwd=tmp_path)
    assert "default: 1s" in shown.stdout and "SQLRUNNER_LOCK_TIMEOUT" in shown.stdout
    env = {"SQLRUNNER_LOCK_RETRIES": "7", "SQLRUNNER_DSN": "postgresql://app:s3cret@db/app"}
    config = invoke("--json", "--ledger-schema", "ops", "config", cwd=tmp_path, env=env)
    assert config.code == 0, config.output
    settings = json.loads(config.stdout)["settings"]
    assert settings["lock_timeout"] == {
        "value": "1s",
        "source": f"file {tmp_path / 'sqlrunner.toml'}",
    }
    assert settings["lock_retries"] == {"value": "7", "source": "env SQLRUNNER_LOCK_RETRIES"}
    assert settings["ledger_schema"] == {"value": "ops", "source": "flag"}
    assert settings["runner_wait"] == {"value": 300.0, "source": "default"}
    assert settings["dsn"]["source"] == "env SQLRUNNER_DSN"
    assert "s3cret" not in config.output


def test_the_replica_and_budget_options_may_be_set_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "sqlrunner.toml").write_text(
        'wait_replicas = 60\nmax-replica-lag = "64MB"\nreplica_wait = 30\nbudget = "10m"\n'
    )
    config = invoke("--json", "config", cwd=tmp_path)
    assert config.code == 0, config.output
    settings = json.loads(config.stdout)["settings"]
    source = f"file {tmp_path / 'sqlrunner.toml'}"
    assert {k: settings[k] for k in ("wait_replicas", "max_replica_lag", "replica_wait")} == {
        "wait_replicas": {"value": 60, "source": source},
        "max_replica_lag": {"value": "64MB", "source": source},
        "replica_wait": {"value": 30, "source": source},
    }
    assert settings["budget"] == {"value": "10m", "source": source}
    help_text = " ".join(invoke("apply", "--help", cwd=tmp_path).stdout.split())
    assert "default: 10m" in help_text and "default: 64MB" in help_text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('dsn = "postgresql://app:pw@db/app"\n', "unknown setting dsn"),
        ("lock_timout = 3\n", "unknown setting lock_timout"),
        ("lock_timeout = \n", "not valid TOML"),
        ('lock_timeout = "0"\n', "lock-timeout"),
    ],
)
def test_a_wrong_config_file_is_one_line_exit_2(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "sqlrunner.toml").write_text(text)
    run = invoke("--dsn", "host=/nonexistent", "apply", cwd=tmp_path)
    assert run.code == 2 and len(run.errors) == 1, run.output
    assert words in run.errors[0] and "pw@" not in run.output


# --- 13. out-of-order files ------------------------------------------------------------------

LATE = "BEGIN;\nCREATE TABLE late (id int);\nCOMMIT;\n"


def merged_branch(dsn: str, sql_set: SqlSet) -> Path:
    root = sql_set({"forward/0002_items.sql": ITEMS})
    assert invoke("--dsn", dsn, "--sql-dir", str(root), "apply").code == 0
    (root / "forward" / "0001_late.sql").write_text(LATE)
    return root


def test_an_out_of_order_file_is_reported_by_status_dry_run_and_apply(
    dsn: str, sql_set: SqlSet
) -> None:
    root = merged_branch(dsn, sql_set)
    note = "out of order: forward/0001_late.sql older than the applied 0002"
    for args in (["status"], ["apply", "--dry-run"], ["apply"]):
        run = invoke("--dsn", dsn, "--sql-dir", str(root), *args)
        assert run.code == 0 and note in run.stdout, (args, run.output)
    assert "late" in tables(dsn)


@pytest.mark.parametrize(
    ("args", "env", "config"),
    [
        (["--strict-order"], {}, ""),
        ([], {"SQLRUNNER_STRICT_ORDER": "1"}, ""),
        ([], {}, "strict-order = true\n"),
    ],
)
def test_strict_order_refuses_an_out_of_order_file_with_exit_2(
    dsn: str, sql_set: SqlSet, tmp_path: Path, args: list[str], env: dict[str, str], config: str
) -> None:
    root = merged_branch(dsn, sql_set)
    (tmp_path / "sqlrunner.toml").write_text(config)
    run = invoke("--dsn", dsn, "--sql-dir", str(root), "apply", *args, env=env, cwd=tmp_path)
    assert run.code == 2 and len(run.errors) == 1, run.output
    assert "forward/0001_late.sql" in run.errors[0] and "nothing was run" in run.errors[0]
    assert "late" not in tables(dsn)


# --- 12. --json for every command, one timestamp format, seeds as seeds ----------------------

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"


def test_every_command_prints_one_json_document_with_a_schema_version(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    root = sql_set(
        {
            "forward/0001_items.sql": ITEMS,
            "rollback/0001_items.sql": DROP_ITEMS,
            "seed/0001_items.sql": "BEGIN;\nINSERT INTO items VALUES (1) ON CONFLICT DO NOTHING;\nCOMMIT;\n",
        }
    )
    base = ("--json", "--dsn", dsn, "--sql-dir", str(root))
    commands = [
        ("apply", "--dry-run"),
        ("apply",),
        ("status",),
        ("verify",),
        ("seed",),
        ("history",),
        ("repair", "--forget-seeds"),
        ("rollback", "--yes"),
        ("new", "add_tags"),
        ("config",),
        ("stop-embedded",),
    ]
    kinds = []
    for args in commands:
        run = invoke(*base, *args, cwd=tmp_path)
        assert run.code == 0, (args, run.output)
        doc = json.loads(run.stdout)
        assert doc["schema_version"] == 1, args
        kinds.append(doc["report"])
    assert kinds == [
        "apply", "apply", "status", "verify", "apply", "history", "repair", "rollback",
        "created", "config", "stop-embedded",
    ]  # fmt: skip
    init = invoke("--json", "init", cwd=tmp_path)
    assert json.loads(init.stdout)["report"] == "created"


def test_a_dry_run_lists_seeds_as_seeds(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set(
        {
            "forward/0001_items.sql": ITEMS,
            "seed/0001_items.sql": "BEGIN;\nINSERT INTO items VALUES (1);\nCOMMIT;\n",
        }
    )
    run = invoke("--json", "--dsn", dsn, "--sql-dir", str(root), "apply", "--dry-run")
    doc = json.loads(run.stdout)
    assert [f["kind"] for f in doc["applied"]] == ["forward"]
    assert [(f["kind"], f["action"]) for f in doc["seeded"]] == [("seed", "would seed")]


def test_timestamps_are_iso_8601_with_offset_in_text_and_json(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})
    invoke("--dsn", dsn, "--sql-dir", str(root), "apply")
    text = invoke("--dsn", dsn, "--sql-dir", str(root), "status").stdout
    assert re.search(rf"applied  forward/0001_items  {ISO} by ", text), text
    doc = json.loads(invoke("--json", "--dsn", dsn, "--sql-dir", str(root), "status").stdout)
    assert re.fullmatch(ISO, doc["files"][0]["applied_at"])
    history = invoke("--dsn", dsn, "history").stdout
    assert re.match(ISO, history), history
    rows = json.loads(invoke("--json", "--dsn", dsn, "history").stdout)["rows"]
    assert all(re.fullmatch(ISO, r["at"]) for r in rows)


# --- wired from the other branches: check ----------------------------------------------------


def test_check_reports_every_problem_without_a_database_and_exits_2(sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS})
    ok = invoke("--sql-dir", str(root), "check")
    assert ok.code == 0, ok.output
    (root / "forward" / "0002_bad.sql").write_text("BEGIN;\nSELEC 1;\nCOMMIT;\n")
    (root / "forward" / "notes.txt").write_text("x")
    bad = invoke("--json", "--sql-dir", str(root), "check")
    assert bad.code == 2, bad.output
    doc = json.loads(bad.stdout)
    assert doc["report"] == "check" and doc["schema_version"] == 1 and len(doc["problems"]) == 2


# --- 7. editor leftovers ---------------------------------------------------------------------


def test_editor_leftovers_are_ignored_and_other_unknown_files_still_refused(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS, "rollback/0001_items.sql": DROP_ITEMS})
    for name in (".0001_items.sql.swp", "0001_items.sql~", ".#0001_items.sql", ".DS_Store"):
        (root / "forward" / name).write_text("junk")
        (root / "rollback" / name).write_text("junk")
    for args in (["check"], ["status"], ["apply"], ["rollback"]):
        run = invoke("--dsn", dsn, "--sql-dir", str(root), *args)
        assert run.code == 0, (args, run.output)
    (root / "forward" / "notes.txt").write_text("x")
    refused = invoke("--dsn", dsn, "--sql-dir", str(root), "status")
    assert refused.code == 2 and "notes.txt" in refused.errors[0], refused.output


# --- 11. logs a person and a machine can follow ---------------------------------------------

SLEEPY = "BEGIN;\nCREATE TABLE items (id int);\nSELECT pg_sleep(2.6);\nCOMMIT;\n"


def test_without_a_terminal_a_long_statement_prints_a_heartbeat(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_items.sql": SLEEPY})
    run = run_process("--dsn", dsn, "--sql-dir", str(root), "--heartbeat", "1", "apply")
    assert run.code == 0, run.output
    beats = [line for line in run.stderr.splitlines() if "still running after" in line]
    assert len(beats) >= 2, run.stderr
    assert "forward/0001_items.sql:3: SELECT pg_sleep(2.6)" in beats[0]
    assert "\r" not in run.stderr and "\x1b" not in run.stderr  # no live line in a log


def test_log_format_json_writes_one_json_event_per_line_on_stderr(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": SLEEPY})
    run = run_process(
        "--dsn", dsn, "--sql-dir", str(root), "--log-format", "json", "--heartbeat", "1", "apply"
    )
    assert run.code == 0, run.output
    events = [json.loads(line) for line in run.stderr.splitlines()]  # every line, target too
    kinds = [e["event"] for e in events]
    assert "heartbeat" in kinds and "file_finished" in kinds, run.stderr
    done = next(e for e in events if e["event"] == "file_finished")
    assert done["file"] == "forward/0001_items.sql" and re.fullmatch(ISO, done["ts"])


def test_on_a_terminal_a_long_statement_gets_a_live_line_not_heartbeats(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the terminal test (apt-get install tmux)")
    root = sql_set({"forward/0001_items.sql": SLEEPY.replace("2.6", "4")})
    socket = f"sqlrunner-{os.getpid()}"
    command = (
        f"{shlex.quote(sys.executable)} -m sqlrunner --dsn {shlex.quote(dsn)} --sql-dir {root} "
        f"--heartbeat 1 apply; sleep 60"
    )
    tmux = ["tmux", "-L", socket]
    subprocess.run([*tmux, "new-session", "-d", "-x", "200", "-y", "20", command], check=True)
    try:
        deadline, screen = time.monotonic() + 20, ""
        while "s" not in screen.partition("pg_sleep(4)")[2]:
            assert time.monotonic() < deadline, screen
            time.sleep(0.3)
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True
            ).stdout
        assert re.search(r"forward/0001_items.sql:3: SELECT pg_sleep\(4\)\s+\d+\.\ds", screen)
        time.sleep(1.5)
        screen = subprocess.run(
            [*tmux, "capture-pane", "-p"], capture_output=True, text=True
        ).stdout
        assert "still running after" not in screen, screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


# --- wired from the other branches: --strict, rollback --to 0, future and failed in status ---

TAGS = "BEGIN;\nCREATE TABLE tags (id int);\nCOMMIT;\n"


def test_future_versions_warn_in_apply_show_in_status_and_strict_refuses(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_items.sql": ITEMS, "forward/0002_tags.sql": TAGS})
    assert invoke("--dsn", dsn, "--sql-dir", str(root), "apply").code == 0
    (root / "forward" / "0002_tags.sql").unlink()  # an older release, after a newer one ran
    status = invoke("--dsn", dsn, "--sql-dir", str(root), "status")
    assert status.code == 0 and "future" in status.stdout, status.output
    goes_on = invoke("--dsn", dsn, "--sql-dir", str(root), "apply")
    assert goes_on.code == 0 and "future" in goes_on.output, goes_on.output
    strict = invoke("--dsn", dsn, "--sql-dir", str(root), "apply", "--strict")
    assert strict.code == 2 and len(strict.errors) == 1, strict.output


def test_rollback_to_0_undoes_everything_and_status_shows_a_failed_file(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_items.sql": ITEMS,
            "rollback/0001_items.sql": DROP_ITEMS,
            "forward/0002_tags.sql": TAGS,
            "rollback/0002_tags.sql": "BEGIN;\nDROP TABLE tags;\nCOMMIT;\n",
        }
    )
    assert invoke("--dsn", dsn, "--sql-dir", str(root), "apply").code == 0
    run = invoke("--dsn", dsn, "--sql-dir", str(root), "rollback", "--to", "0", "--yes")
    assert run.code == 0, run.output
    assert not {"items", "tags"} & tables(dsn)
    (root / "forward" / "0001_items.sql").write_text("BEGIN;\nSELECT 1/0;\nCOMMIT;\n")
    assert invoke("--dsn", dsn, "--sql-dir", str(root), "apply").code == 4
    status = invoke("--dsn", dsn, "--sql-dir", str(root), "status")
    assert "failed" in status.stdout.splitlines()[0], status.stdout
