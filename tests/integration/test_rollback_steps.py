"""Rollbacks of several steps: seeds forgotten with the first step, and ``--to 0``."""

from __future__ import annotations

import psycopg
import pytest

import sqlrunner

from .conftest import SqlSet, cli

BASE = "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY);\nCOMMIT;\n"


def scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row else None


def pair(version: int, name: str, table: str) -> dict[str, str]:
    return {
        f"forward/{version:04d}_{name}.sql": f"BEGIN;\nCREATE TABLE {table} (t text PRIMARY KEY);\n"
        "COMMIT;\n",
        f"rollback/{version:04d}_{name}.sql": f"BEGIN;\nDROP TABLE {table};\nCOMMIT;\n",
    }


def test_a_rollback_failing_at_step_2_has_still_forgotten_the_seeds(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set(
        {
            "forward/0001_base.sql": BASE,
            **pair(2, "a", "a"),
            **pair(3, "b", "b"),
            **pair(4, "tags", "tags"),
            "seed/0001_tags.sql": "BEGIN;\nINSERT INTO tags VALUES ('x') ON CONFLICT DO NOTHING;\n"
            "COMMIT;\n",
        }
    )
    (root / "rollback/0003_b.sql").write_text("BEGIN;\nDROP TABLE b;\nSELECT 1/0;\nCOMMIT;\n")
    sqlrunner.apply(dsn, root)

    with pytest.raises(sqlrunner.MigrationFailed) as failed:
        sqlrunner.rollback(dsn, root, steps=3)
    assert failed.value.file.endswith("rollback/0003_b.sql")
    assert scalar(dsn, "SELECT to_regclass('tags')") is None  # step 1 committed
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger WHERE kind = 'seed'") == 0

    again = sqlrunner.apply(dsn, root)
    assert [r.version for r in again.applied] == [4]
    assert [s.name for s in again.seeded] == ["tags"]
    assert scalar(dsn, "SELECT count(*) FROM tags") == 1
    assert sqlrunner.status(dsn, root).up_to_date


def test_rollback_to_0_undoes_everything_reversible_and_stops_at_the_baseline(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, **pair(2, "a", "a"), **pair(3, "b", "b")})
    sqlrunner.apply(dsn, root)

    report = sqlrunner.rollback(dsn, root, to=0)

    assert [r.version for r in report.rolled_back] == [3, 2]
    assert len(report.notes) == 1
    assert "forward/0001_base.sql is irreversible" in report.notes[0]
    assert scalar(dsn, "SELECT array_agg(version) FROM sqlrunner_ledger") == [1]
    assert scalar(dsn, "SELECT to_regclass('a')") is None

    again = sqlrunner.rollback(dsn, root, to=0)  # nothing reversible left: a no-op, not an error
    assert again.rolled_back == () and "irreversible" in again.notes[0]


def test_rollback_to_0_of_a_fully_reversible_set_leaves_an_empty_ledger(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({**pair(1, "a", "a"), **pair(2, "b", "b")})
    sqlrunner.apply(dsn, root)

    dry = sqlrunner.rollback(dsn, root, to=0, dry_run=True)
    assert [r.action for r in dry.rolled_back] == ["would roll back"] * 2

    report = sqlrunner.rollback(dsn, root, to=0)
    assert [r.version for r in report.rolled_back] == [2, 1] and report.notes == ()
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger") == 0
    assert [r.version for r in sqlrunner.apply(dsn, root).applied] == [1, 2]


def test_rollback_steps_still_refuses_when_an_irreversible_file_is_in_the_way(
    dsn: str, sql_set: SqlSet
) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, **pair(2, "a", "a")})
    sqlrunner.apply(dsn, root)
    with pytest.raises(sqlrunner.UsageError, match="use --steps 1"):
        sqlrunner.rollback(dsn, root, steps=2)
    assert scalar(dsn, "SELECT count(*) FROM sqlrunner_ledger") == 2


def test_cli_rollback_to_0_prints_where_it_stopped(dsn: str, sql_set: SqlSet) -> None:
    root = sql_set({"forward/0001_base.sql": BASE, **pair(2, "a", "a")})
    sqlrunner.apply(dsn, root)

    run = cli("--sql-dir", str(root), "rollback", "--to", "0", dsn=dsn)

    assert run.returncode == 0, run.stderr
    assert "forward/0001_base.sql is irreversible" in run.stdout + run.stderr
