"""After a failed apply, status shows the file as failed until it succeeds."""

from __future__ import annotations

import json

import pytest

import sqlrunner

from .conftest import SqlSet, cli

BASE = "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\nCOMMIT;\n"
BROKEN = "BEGIN;\nCREATE TABLE tags (t text);\nSELECT 1/0;\nCOMMIT;\n"


def test_status_shows_a_failed_file_with_when_and_the_error_until_it_succeeds(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_tags.sql": BROKEN})
    with pytest.raises(sqlrunner.MigrationFailed):
        sqlrunner.apply(dsn, root)

    report = sqlrunner.status(dsn, root)
    failed = {f.label: f for f in report.files}["forward/0002_tags"]
    assert failed.state == "failed"
    assert failed.failed_at is not None and failed.failed_by
    assert failed.error is not None and failed.error.startswith("forward/0002_tags.sql:3:")
    assert "SQLSTATE 22012: division by zero" in failed.error and " | " not in failed.error
    assert report.failed == (failed,) and failed in report.pending and not report.up_to_date

    (root / "forward/0002_tags.sql").write_text(BROKEN.replace("SELECT 1/0;\n", ""))
    edited = {f.label: f for f in sqlrunner.status(dsn, root).files}["forward/0002_tags"]
    assert edited.state == "failed" and edited.error is not None
    assert edited.error.endswith("(the file changed since)")

    sqlrunner.apply(dsn, root)
    assert {f.label: f.state for f in sqlrunner.status(dsn, root).files} == {
        "forward/0001_base": "applied",
        "forward/0002_tags": "applied",
    }


def test_a_failed_seed_is_failed_and_a_rolled_back_file_is_plain_pending(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            "forward/0002_tags.sql": "BEGIN;\nCREATE TABLE tags (t text);\nCOMMIT;\n",
            "rollback/0002_tags.sql": "BEGIN;\nDROP TABLE tags;\nCOMMIT;\n",
            "seed/0001_items.sql": "BEGIN;\nINSERT INTO items VALUES ('x');\nCOMMIT;\n",
        }
    )
    with pytest.raises(sqlrunner.MigrationFailed):
        sqlrunner.apply(dsn, root)
    states = {f.label: f.state for f in sqlrunner.status(dsn, root).files}
    assert states == {
        "forward/0001_base": "applied",
        "forward/0002_tags": "applied",
        "seed/0001_items": "failed",
    }
    (root / "seed/0001_items.sql").write_text("BEGIN;\nINSERT INTO items VALUES (1);\nCOMMIT;\n")
    sqlrunner.apply(dsn, root)
    sqlrunner.rollback(dsn, root)
    states = {f.label: f.state for f in sqlrunner.status(dsn, root).files}
    assert states["forward/0002_tags"] == "pending"


def test_cli_status_prints_failed_and_its_error_in_text_and_json(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, "forward/0002_tags.sql": BROKEN})
    assert cli("--sql-dir", str(root), "apply", dsn=dsn).returncode == 4

    text = cli("--sql-dir", str(root), "status", "--exit-code", dsn=dsn)
    assert text.returncode == 6
    out = text.stdout + text.stderr
    assert "failed   forward/0002_tags" in out and "division by zero" in out
    assert "1 pending (1 failed), 0 drifted or missing" in out

    document = json.loads(cli("--json", "--sql-dir", str(root), "status", dsn=dsn).stdout)
    assert document["failed"] == ["forward/0002_tags"]
    (entry,) = [f for f in document["files"] if f["state"] == "failed"]
    assert "SQLSTATE 22012" in entry["error"] and entry["failed_at"]
