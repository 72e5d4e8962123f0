"""``sqlrunner lint`` (issue 12 item 14): squawk on the pending files, or the files given,
with the project's rule set and squawk's inline ignores; exit 2 on findings."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from .clirun import invoke
from .conftest import SqlSet

CLEAN = "BEGIN;\nCREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, c bigint);\nCOMMIT;\n"
BLOCKING_INDEX = "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nBEGIN;\nCREATE INDEX IF NOT EXISTS t_c ON t (c);\nCOMMIT;\n"
NARROW_COLUMN = "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nBEGIN;\nALTER TABLE t ADD COLUMN IF NOT EXISTS n int;\nCOMMIT;\n"
UNDO = "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nBEGIN;\nDROP INDEX IF EXISTS t_c;\nCOMMIT;\n"


def rules_of(stdout: str) -> list[tuple[str, str]]:
    """(path:line:column, rule) of each finding line."""
    return [tuple(line.split(" ", 2)[:2]) for line in stdout.splitlines()]  # type: ignore[misc]


@pytest.fixture
def project(sql_set: SqlSet) -> Path:
    sql_set(
        {
            "forward/0001_t.sql": CLEAN.replace("c bigint", "c int"),  # a finding, once applied
            "forward/0002_index.sql": BLOCKING_INDEX,
            "rollback/0002_index.sql": UNDO,
        }
    )
    return sql_set({})


def test_only_the_pending_files_are_linted_and_findings_exit_2(dsn: str, project: Path) -> None:
    cwd = project.parent
    assert invoke("--dsn", dsn, "apply", "--to", "1", cwd=cwd).code == 0  # 0001 is applied
    run = invoke("--dsn", dsn, "lint", cwd=cwd)
    assert run.code == 2, run.output
    assert rules_of(run.stdout) == [
        ("sql/forward/0002_index.sql:4:1", "require-concurrent-index-creation"),
        ("sql/rollback/0002_index.sql:4:1", "require-concurrent-index-deletion"),
    ]
    assert run.stdout.startswith(
        "sql/forward/0002_index.sql:4:1 require-concurrent-index-creation During normal index "
        "creation, table updates are blocked"
    )
    assert "the pending forward files and their rollback files: 2 file(s)" in run.stderr
    everything = invoke("--dsn", dsn, "lint", "--all", cwd=cwd)
    assert everything.code == 2
    assert ("sql/forward/0001_t.sql:2:56", "prefer-bigint-over-int") in rules_of(everything.stdout)


def test_without_a_database_or_when_it_is_unreachable_every_file_is_linted(project: Path) -> None:
    cwd = project.parent
    offline = invoke("lint", cwd=cwd)
    assert offline.code == 2
    assert "every forward and rollback file (no database given): 3 file(s)" in offline.stderr
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = invoke("--dsn", f"postgresql://u:Secret9@127.0.0.1:{port}/db", "lint", cwd=cwd)
    assert unreachable.code == 2
    assert "database not reachable" in unreachable.stderr
    assert "Secret9" not in unreachable.output
    assert rules_of(unreachable.stdout) == rules_of(offline.stdout)


def test_the_files_given_inline_ignores_and_the_projects_rule_set_are_honoured(
    sql_set: SqlSet, tmp_path: Path
) -> None:
    sql_dir = sql_set(
        {
            "forward/0001_index.sql": BLOCKING_INDEX,
            "forward/0002_column.sql": NARROW_COLUMN,
            "forward/0003_ignored.sql": NARROW_COLUMN.replace(
                "ALTER", "-- squawk-ignore prefer-bigint-over-int\nALTER"
            ),
        }
    )
    given = [str(p) for p in sorted((sql_dir / "forward").iterdir())]
    run = invoke("lint", *given, cwd=tmp_path)
    assert run.code == 2
    assert [rule for _, rule in rules_of(run.stdout)] == [
        "require-concurrent-index-creation",
        "prefer-bigint-over-int",
    ]
    (tmp_path / "sqlrunner.toml").write_text('lint_excluded_rules = ["prefer-bigint-over-int"]\n')
    (tmp_path / ".squawk.toml").write_text(
        'excluded_rules = ["require-concurrent-index-creation"]\n'
    )
    clean = invoke("lint", *given, cwd=tmp_path)
    assert (clean.code, clean.stdout) == (0, ""), clean.output
    assert "3 file(s), no findings" in clean.stderr
    (tmp_path / ".squawk.toml").unlink()
    flag = invoke(
        "lint", "--exclude-rule", "require-concurrent-index-creation", *given, cwd=tmp_path
    )
    assert flag.code == 2  # the flag replaces the file's rule list, as click's precedence says
    assert [rule for _, rule in rules_of(flag.stdout)] == ["prefer-bigint-over-int"]


def test_no_transaction_files_are_not_linted_as_if_inside_a_transaction(
    sql_set: SqlSet, tmp_path: Path
) -> None:
    sql_dir = sql_set(
        {
            "forward/0001_index.sql": "-- sqlrunner: no-transaction\nSET lock_timeout = '1s';\n"
            "SET statement_timeout = 0;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_c ON t (c);\n",
            "forward/0002_column.sql": CLEAN.replace(
                "BEGIN;", "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nBEGIN;"
            ),
        }
    )
    # a project whose squawk config assumes a migration tool's transaction around each file
    (tmp_path / ".squawk.toml").write_text("assume_in_transaction = true\n")
    run = invoke("lint", "--all", "--sql-dir", str(sql_dir), cwd=tmp_path)
    assert (run.code, run.stdout) == (0, ""), run.output


def test_json_is_one_document_with_every_finding(project: Path) -> None:
    run = invoke("--json", "lint", "--all", cwd=project.parent)
    assert run.code == 2
    document = json.loads(run.stdout)
    assert document["report"] == "lint" and document["ok"] is False
    assert document["files"] == [
        "sql/forward/0001_t.sql",
        "sql/forward/0002_index.sql",
        "sql/rollback/0002_index.sql",
    ]
    first = document["findings"][0]
    assert set(first) == {"file", "line", "column", "rule", "message", "help", "level"}
    assert {f["rule"] for f in document["findings"]} >= {
        "prefer-bigint-over-int",
        "require-concurrent-index-creation",
    }


def test_without_squawk_installed_lint_is_one_line_exit_2(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "empty" / "python"))
    run = invoke("lint", cwd=project.parent)
    assert run.code == 2
    assert run.errors == [
        "sqlrunner: error: squawk is not installed: pip install 'sqlrunner[lint]' "
        "(the squawk-cli package), or put squawk on PATH"
    ]
    assert run.stdout == ""


def test_config_shows_the_lint_rules_and_where_they_come_from(tmp_path: Path) -> None:
    (tmp_path / "sqlrunner.toml").write_text('lint_excluded_rules = ["prefer-bigint-over-int"]\n')
    rows = json.loads(invoke("--json", "config", cwd=tmp_path).stdout)["settings"]
    assert rows["lint_excluded_rules"] == {
        "value": ["prefer-bigint-over-int"],
        "source": f"file {tmp_path / 'sqlrunner.toml'}",
    }
    assert rows["strict_order"] == {"value": False, "source": "default"}  # not click's sentinel
