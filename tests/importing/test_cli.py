"""The import / adopt / baseline commands, in process through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import psycopg
from click.testing import CliRunner

from sqlrunner.cli import cli


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
