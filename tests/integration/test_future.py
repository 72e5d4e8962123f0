"""Rolling deploys: an older replica restarts after a newer release applied a new file."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest

import sqlrunner
from sqlrunner.report import Event

from .conftest import SqlSet, cli

OLDER = {
    "forward/0001_items.sql": "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY, name text);\nCOMMIT;\n",
    "forward/0002_tags.sql": "BEGIN;\nCREATE TABLE tags (t text PRIMARY KEY);\nCOMMIT;\n",
    "forward/0003_notes.sql": "BEGIN;\nCREATE TABLE notes (n text);\nCOMMIT;\n",
    "seed/0001_tags.sql": "BEGIN;\nINSERT INTO tags VALUES ('a') ON CONFLICT DO NOTHING;\nCOMMIT;\n",
}
NEWER = {
    **OLDER,
    "forward/0004_colour.sql": "BEGIN;\nALTER TABLE items ADD COLUMN colour text;\nCOMMIT;\n",
    "seed/0001_tags.sql": "BEGIN;\nINSERT INTO tags VALUES ('a'), ('b') ON CONFLICT DO NOTHING;\n"
    "COMMIT;\n",
}


def releases(sql_set: SqlSet, tmp_path: Path) -> tuple[Path, Path]:
    """(older sql/, newer sql/): the newer release adds 0004 and changes the seed."""
    older = sql_set(OLDER)
    newer = tmp_path / "newer"
    for relative, text in NEWER.items():
        (newer / relative).parent.mkdir(parents=True, exist_ok=True)
        (newer / relative).write_text(text)
    return older, newer


def seed_checksum(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT checksum FROM sqlrunner_ledger WHERE kind = 'seed'").fetchone()
        assert row is not None
        return str(row[0])


def test_older_replica_warns_about_future_versions_and_goes_on(
    dsn: str, sql_set: SqlSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    older, newer = releases(sql_set, tmp_path)
    sqlrunner.apply(dsn, older, to=2)  # the old release ran up to 0002
    sqlrunner.apply(dsn, newer)  # the new release applied 0003 and 0004 and its seed
    newer_seed = seed_checksum(dsn)

    events: list[Event] = []
    with caplog.at_level(logging.WARNING, logger="sqlrunner"):
        report = sqlrunner.apply(dsn, older, on_event=events.append)

    assert report.applied == () and report.seeded == ()
    assert any("future: 0004_colour applied by a newer release" in n for n in report.notes)
    assert [e.kind for e in events] == ["warning"]
    assert any("0004_colour" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert seed_checksum(dsn) == newer_seed  # the old seed did not overwrite the new one


def test_older_replica_with_a_pending_file_applies_it_and_keeps_the_newer_seed(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    older, newer = releases(sql_set, tmp_path)
    (newer / "forward/0003_notes.sql").unlink()  # the newer release never had 0003
    sqlrunner.apply(dsn, newer)
    newer_seed = seed_checksum(dsn)

    report = sqlrunner.apply(dsn, older)

    assert [r.version for r in report.applied] == [3]
    assert report.seeded == ()
    assert seed_checksum(dsn) == newer_seed


def test_strict_refuses_future_versions_and_changes_nothing(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    older, newer = releases(sql_set, tmp_path)
    sqlrunner.apply(dsn, newer, to=1)
    sqlrunner.apply(dsn, newer)
    (older / "forward/0003_notes.sql").unlink()
    (older / "forward/0002_tags.sql").unlink()  # an even older replica: only 0001
    with pytest.raises(sqlrunner.FutureVersions) as refused:
        sqlrunner.apply(dsn, older, strict=True)
    assert refused.value.exit_code == 2
    assert "0002_tags, 0003_notes, 0004_colour applied by a newer release" in str(refused.value)


def test_a_gap_inside_the_local_range_is_still_missing_and_refused(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(OLDER)
    sqlrunner.apply(dsn, root)
    (root / "forward/0002_tags.sql").unlink()
    with pytest.raises(sqlrunner.ChecksumMismatch, match=r"forward/0002_tags \(missing\)"):
        sqlrunner.apply(dsn, root)


def test_status_shows_future_versions_as_future_and_up_to_date(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    older, newer = releases(sql_set, tmp_path)
    sqlrunner.apply(dsn, newer)

    report = sqlrunner.status(dsn, older)
    assert [(f.label, f.state) for f in report.future] == [("forward/0004_colour", "future")]
    assert report.drifted == () and report.up_to_date
    assert any("0004_colour applied by a newer release" in n for n in report.notes)

    run = cli("--sql-dir", str(older), "status", "--exit-code", dsn=dsn)
    assert run.returncode == 0, run.stderr
    assert "future   forward/0004_colour" in run.stdout + run.stderr


def test_cli_apply_of_an_older_replica_exits_0_with_a_warning(
    dsn: str, sql_set: SqlSet, tmp_path: Path
) -> None:
    older, newer = releases(sql_set, tmp_path)
    sqlrunner.apply(dsn, newer)

    run = cli("--sql-dir", str(older), "apply", dsn=dsn)

    assert run.returncode == 0, run.stderr
    assert "0004_colour applied by a newer release" in run.stdout + run.stderr
