"""``check``: every problem of the whole set at once, as a library call, without a database."""

from __future__ import annotations

from pathlib import Path

from sqlrunner import api
from sqlrunner.errors import Problem
from sqlrunner.files import load_migration_set
from sqlrunner.report import render_text, to_dict
from tests.conftest import write_files

REPO_SQL = Path(__file__).resolve().parents[2] / "sql"


def test_the_shipped_set_has_no_problems() -> None:
    report = api.check(REPO_SQL)

    assert report.ok
    assert report.problems == ()
    assert report.files == len(tuple(load_migration_set(REPO_SQL)))


def test_every_problem_of_every_kind_of_file_is_reported_at_once(tmp_path: Path) -> None:
    root = write_files(
        tmp_path,
        {
            "forward/0001_ok.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "forward/0002_typo.sql": "BEGIN;\nCREATE TABEL u (id int);\nCOMMIT;\n",
            "forward/0003_Bad_Name.sql": "BEGIN;\nCOMMIT;\n",
            "forward/0004_nul.sql": "BEGIN;\nSELECT '\x00';\nCOMMIT;\n",
            "rollback/0001_ok.sql": "BEGIN;\n\\echo dropping t\nDROP TABLE t;\nCOMMIT;\n",
            "rollback/0002_typo.sql": "DROP TABLE u;\n",
            "seed/0001_rows.sql": "BEGIN;\nINSERT INTO t VALUES (1);\nCOMMIT;\nSELECT 1;\n",
            "verify/0001_ok.sql": "SELECT 'c', true, '';\nCOMMIT;\n",
            "verify/0009_orphan.sql": "SELECT 'c', true, '';\n",
        },
    )

    report = api.check(root)

    assert not report.ok
    assert [(p.path, p.line, p.column, p.sqlstate) for p in report.problems] == [
        ("forward/0003_Bad_Name.sql", None, None, None),
        ("forward/0004_nul.sql", 2, 9, None),
        ("verify/0009_orphan.sql", None, None, None),
        ("forward/0002_typo.sql", 2, 8, "42601"),
        ("rollback/0001_ok.sql", 2, 1, None),
        ("rollback/0002_typo.sql", 1, 1, None),
        ("seed/0001_rows.sql", 4, 1, None),
        ("verify/0001_ok.sql", 2, 1, None),
    ]
    described = [p.describe() for p in report.problems]
    assert described[3] == (
        'forward/0002_typo.sql:2:8: SQLSTATE 42601: syntax error at or near "TABEL"'
    )
    assert described[4].startswith("rollback/0001_ok.sql:2:1: psql meta-command \\echo")
    assert report.files == 7  # read and parsed; two could not be read as migrations


def test_a_missing_sql_dir_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    report = api.check(tmp_path / "nowhere")

    assert report.problems == (
        Problem(None, None, None, f"sql directory not found: {tmp_path / 'nowhere'}"),
    )


def test_a_loaded_set_can_be_checked(tmp_path: Path) -> None:
    root = write_files(tmp_path, {"forward/0001_x.sql": "CREATE TABLE t ();\n"})

    report = api.check(load_migration_set(root))

    assert [p.line for p in report.problems] == [1]


def test_the_report_renders_as_text_and_json(tmp_path: Path) -> None:
    root = write_files(tmp_path, {"forward/0001_x.sql": "BEGIN;\nSELEC 1;\nCOMMIT;\n"})
    report = api.check(root)

    assert render_text(report) == (
        'forward/0001_x.sql:2:1: SQLSTATE 42601: syntax error at or near "SELEC"\n'
        f"check: 1 file(s) in {root}, 1 problem(s)"
    )
    document = to_dict(report)
    assert document["report"] == "check"
    assert document["ok"] is False
    assert list(document["problems"]) == [
        {
            "path": "forward/0001_x.sql",
            "line": 2,
            "column": 1,
            "message": 'syntax error at or near "SELEC"',
            "sqlstate": "42601",
        }
    ]
    assert render_text(api.check(REPO_SQL)).endswith(", no problems")
