"""Round trips through sqlrunner on catalog snapshots, with data in the baseline tables.

forward -> rollback must give back the baseline exactly (catalog, rows, values, and
no table rewritten on the way); forward -> rollback -> forward must equal forward.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

import sqlrunner

from .conftest import (
    BASELINE_TABLES,
    NEW_TABLES,
    execute,
    insert_baseline_data,
    snapshot,
    table_rows,
)


def _relfilenodes(dsn: str) -> dict[str, int]:
    """A changed relfilenode means the table was rewritten."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return dict(
            conn.execute(
                "SELECT relname, relfilenode FROM pg_class"
                " WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%s)",
                (list(BASELINE_TABLES),),
            ).fetchall()
        )


def _use_the_new_schema(dsn: str) -> None:
    """Fill new columns of existing rows and rows of the new tables, as ops-center will."""
    execute(
        dsn,
        "UPDATE llm_providers SET api_key_encrypted = '\\x0102'::bytea,"
        " metadata = '{\"region\": \"eu\"}' WHERE provider_type = 'openai'",
        "UPDATE model_servers SET host = 'gpu-1.internal', port = 11434, location = 'dc1/r4',"
        " gpu_id = '0', auto_start = true WHERE name = 'gpu-1'",
        "INSERT INTO installed_models (server_id, model_name, status)"
        " SELECT id, 'llama3.1:8b', 'ready' FROM model_servers WHERE name = 'gpu-1'",
        "INSERT INTO model_deployments (deployment_name, server_id, model_name, status)"
        " SELECT 'llama-gpu-1', server_id, model_name, 'running' FROM installed_models",
        "UPDATE llm_usage_logs SET provider = 'ollama', source = 'api', cost_usd = 0.00012,"
        " latency_ms = 250, server_id = (SELECT id FROM model_servers WHERE name = 'gpu-1'),"
        " deployment_id = (SELECT id FROM model_deployments) WHERE id % 10 = 0",
        "INSERT INTO model_pricing (provider, model, input_price_per_token,"
        " output_price_per_token, effective_from)"
        " VALUES ('openai', 'gpt-4o', 0.0000025, 0.00001, '2025-01-01')",
        "INSERT INTO daily_cost_summary (usage_date, user_id, provider, model, cost_usd)"
        " VALUES ('2025-01-01', 1, 'openai', 'gpt-4o', 1.5)",
        "INSERT INTO model_permissions (subject_type, subject_id, provider, model_pattern)"
        " VALUES ('user', '42', 'custom', '%')",
        "INSERT INTO audit_log (action, actor_id) VALUES ('model_permission.grant', 'admin')",
    )


def test_forward_then_rollback_restores_the_baseline(dsn: str, sql_dir: Path) -> None:
    sqlrunner.apply(dsn, sql_dir, to=1)
    insert_baseline_data(dsn)
    baseline, rows, files = snapshot(dsn), table_rows(dsn), _relfilenodes(dsn)

    sqlrunner.apply(dsn, sql_dir)
    forward = snapshot(dsn)
    _use_the_new_schema(dsn)
    assert _relfilenodes(dsn) == files, "forward rewrote a baseline table"
    assert forward != baseline

    report = sqlrunner.rollback(dsn, sql_dir, to=1, allow_data_loss=True)
    assert [r.version for r in report.rolled_back] == [4, 3, 2]
    assert snapshot(dsn) == baseline
    assert table_rows(dsn) == rows, "rollback changed rows or values of the baseline tables"
    assert _relfilenodes(dsn) == files, "rollback rewrote a baseline table"


def test_forward_rollback_forward_equals_forward(dsn: str, sql_dir: Path) -> None:
    sqlrunner.apply(dsn, sql_dir, to=1)
    insert_baseline_data(dsn)
    sqlrunner.apply(dsn, sql_dir)
    forward = snapshot(dsn)
    _use_the_new_schema(dsn)

    sqlrunner.rollback(dsn, sql_dir, to=1, allow_data_loss=True)
    report = sqlrunner.apply(dsn, sql_dir)
    assert [r.version for r in report.applied] == [2, 3, 4]
    assert report.verification is not None and report.verification.ok
    assert snapshot(dsn) == forward
    with psycopg.connect(dsn, autocommit=True) as conn:
        empty = [
            t
            for t in NEW_TABLES
            if t != "tier_model_rules"
            and conn.execute(f"SELECT NOT EXISTS (SELECT FROM {t})").fetchone() == (True,)
        ]
    assert sorted(empty) == sorted(t for t in NEW_TABLES if t != "tier_model_rules")
