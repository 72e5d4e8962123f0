"""The 13 checks of the original deployment report, against the shipped sql/ set.

forward files found, rollback files found, seed found, test database created,
forward applied (sqlrunner.apply), 10 tables, 48 indexes, audit_log refuses
changes, audit record preserved, 50 tier rules, 5 tiers, rollback applied
(sqlrunner.rollback to=1; steps=2 before 0004 shipped), new tables dropped.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

import sqlrunner

from .conftest import (
    ALL_NEW_INDEXES,
    BASELINE_TABLES,
    FORWARD,
    FORWARD_INDEXES,
    NEW_TABLES,
    ROLLBACK,
    ROLLBACK_INDEXES,
    SEED,
    TIERS,
)

AUDIT_ROW = ("model_permission.grant", "user", "42", {"model": "gpt-4o"})


def test_forward_files_found(sql_dir: Path) -> None:
    names = sorted(p.name for p in (sql_dir / "forward").glob("*.sql"))
    assert names == [
        "0001_baseline.sql",
        "0002_llm_management.sql",
        "0003_llm_management_indexes.sql",
        "0004_usage_provider_cost_backfill.sql",
    ]
    assert FORWARD.is_file() and FORWARD_INDEXES.is_file()


def test_rollback_files_found(sql_dir: Path) -> None:
    names = sorted(p.name for p in (sql_dir / "rollback").glob("*.sql"))
    # the baseline is irreversible: it has no rollback file
    assert names == [
        "0002_llm_management.sql",
        "0003_llm_management_indexes.sql",
        "0004_usage_provider_cost_backfill.sql",
    ]
    assert ROLLBACK.is_file() and ROLLBACK_INDEXES.is_file()


def test_seed_found(sql_dir: Path) -> None:
    assert sorted(p.name for p in (sql_dir / "seed").glob("*.sql")) == [SEED.name]


def test_test_database_created(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int,"
            " (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)"
        ).fetchone()
    assert row is not None
    version, relations = row
    assert version >= 140004, "the migration set needs PostgreSQL 14.4 or newer"
    assert relations == 0, "every test must start from an empty database"


def test_forward_applied(dsn: str, sql_dir: Path) -> None:
    report = sqlrunner.apply(dsn, sql_dir)
    assert [(r.version, r.action) for r in report.applied] == [
        (1, "applied"),
        (2, "applied"),
        (3, "applied"),
        (4, "applied"),
    ]
    assert [r.name for r in report.seeded] == ["tier_model_rules"]
    assert report.verification is not None
    failed = [(c.check, c.detail) for c in report.verification.checks if not c.ok]
    assert report.verification.checks and not failed


def test_all_ten_tables_exist(shared_applied_dsn: str) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        found = {
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind = 'r' AND relname = ANY(%s)",
                ([*BASELINE_TABLES, *NEW_TABLES],),
            )
        }
    assert found == {*BASELINE_TABLES, *NEW_TABLES}


def test_48_indexes_exist_valid_and_ready(shared_applied_dsn: str) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, x.indisvalid AND x.indisready FROM pg_index x"
            " JOIN pg_class c ON c.oid = x.indexrelid"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s)",
            (list(ALL_NEW_INDEXES),),
        ).fetchall()
    assert len(ALL_NEW_INDEXES) == 48
    assert sorted(name for name, _ in rows) == sorted(ALL_NEW_INDEXES)
    assert all(ok for _, ok in rows)


def _insert_audit_row(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    action, actor_type, actor_id, details = AUDIT_ROW
    conn.execute(
        "INSERT INTO audit_log (action, actor_type, actor_id, details)"
        " VALUES (%s, %s, %s, %s::jsonb)",
        (action, actor_type, actor_id, Jsonb(details)),
    )


ATTACKS: dict[str, tuple[str, ...]] = {
    "update": ("UPDATE audit_log SET actor_id = 'mallory'",),
    "zero-row update": ("UPDATE audit_log SET actor_id = 'mallory' WHERE false",),
    "delete": ("DELETE FROM audit_log",),
    "zero-row delete": ("DELETE FROM audit_log WHERE id < 0",),
    "truncate": ("TRUNCATE audit_log",),
    "merge": (
        "MERGE INTO audit_log a USING (SELECT id FROM audit_log) s ON a.id = s.id"
        " WHEN MATCHED THEN DELETE",
    ),
    "on conflict do update": (
        "INSERT INTO audit_log (id, action) OVERRIDING SYSTEM VALUE"
        " SELECT id, 'x.forged' FROM audit_log"
        " ON CONFLICT (id) DO UPDATE SET action = EXCLUDED.action",
    ),
    "update under replica role": (
        "SET session_replication_role = replica",
        "UPDATE audit_log SET actor_id = 'mallory'",
    ),
    "delete under replica role": (
        "SET session_replication_role = replica",
        "DELETE FROM audit_log",
    ),
    "truncate under replica role": (
        "SET session_replication_role = replica",
        "TRUNCATE audit_log",
    ),
}


def _attack(conn: psycopg.Connection[tuple[object, ...]], statements: tuple[str, ...]) -> None:
    """Run the statements; the last one must fail with the trigger's error."""
    *setup, last = statements
    merge_unsupported = last.startswith("MERGE") and conn.info.server_version < 150000
    for statement in setup:
        conn.execute(statement)
    try:
        expected = (
            psycopg.errors.SyntaxError
            if merge_unsupported
            else (psycopg.errors.InsufficientPrivilege)
        )
        with pytest.raises(expected) as refused:
            conn.execute(last)
        if not merge_unsupported:  # MERGE exists from PostgreSQL 15 on
            assert "audit_log is append-only" in str(refused.value)
    finally:
        conn.execute("RESET session_replication_role")


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_audit_log_refuses_change(shared_applied_dsn: str, attack: str) -> None:
    """Each statement fails with the trigger's error, even run by a superuser that owns
    the table, and no row changes."""
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        _insert_audit_row(conn)
        before = conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
        _attack(conn, ATTACKS[attack])
        after = conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    assert before and after == before


def test_audit_record_preserved(applied: str) -> None:
    """One record survives every attack in turn; appending (and ON CONFLICT DO NOTHING)
    still works afterwards."""
    with psycopg.connect(applied, autocommit=True) as conn:
        _insert_audit_row(conn)
        before = conn.execute("SELECT * FROM audit_log").fetchall()
        for statements in ATTACKS.values():
            _attack(conn, statements)
        after = conn.execute("SELECT * FROM audit_log").fetchall()
        conn.execute(
            "INSERT INTO audit_log (id, action) OVERRIDING SYSTEM VALUE"
            " SELECT id, 'x.again' FROM audit_log ON CONFLICT (id) DO NOTHING"
        )
        _insert_audit_row(conn)
        count = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    assert len(before) == 1 and after == before
    assert count == (2,)


def test_50_tier_rules(shared_applied_dsn: str) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM tier_model_rules").fetchone() == (50,)


def test_all_5_tiers(shared_applied_dsn: str) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        tiers = {t for (t,) in conn.execute("SELECT DISTINCT tier FROM tier_model_rules")}
        terms = conn.execute(
            "SELECT DISTINCT tier, tier_price_usd::text, billing_period, api_call_limit,"
            " api_call_limit_period FROM tier_model_rules ORDER BY tier_price_usd"
        ).fetchall()
    assert tiers == set(TIERS)
    assert terms == [
        ("free", "0.00", "month", 100, "day"),
        ("trial", "1.00", "week", 100, "day"),
        ("starter", "19.00", "month", 1000, "month"),
        ("professional", "49.00", "month", 10000, "month"),
        ("enterprise", "99.00", "month", None, None),
    ]


@pytest.fixture
def rolled_back(applied: str, sql_dir: Path) -> tuple[str, sqlrunner.RollbackReport]:
    report = sqlrunner.rollback(applied, sql_dir, to=1, allow_data_loss=True)
    return applied, report


def test_rollback_applied(rolled_back: tuple[str, sqlrunner.RollbackReport]) -> None:
    dsn, report = rolled_back
    assert [(r.version, r.action) for r in report.rolled_back] == [
        (4, "rolled back"),
        (3, "rolled back"),
        (2, "rolled back"),
    ]
    status = sqlrunner.status(dsn, FORWARD.parents[1])
    applied = [(s.version, s.state) for s in status.files if s.kind == "forward"]
    assert applied == [(1, "applied"), (2, "pending"), (3, "pending"), (4, "pending")]


def test_all_new_tables_dropped(rolled_back: tuple[str, sqlrunner.RollbackReport]) -> None:
    dsn, _ = rolled_back
    with psycopg.connect(dsn, autocommit=True) as conn:
        left = {
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relname = ANY(%s)",
                ([*NEW_TABLES, *ALL_NEW_INDEXES],),
            )
        }
        functions = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        ).fetchone()
        baseline = {
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relname = ANY(%s)",
                (list(BASELINE_TABLES),),
            )
        }
    assert left == set()
    assert functions == (0,)
    assert baseline == set(BASELINE_TABLES)
