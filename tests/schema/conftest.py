"""Helpers for the shipped migration set: file paths, psql runs, catalog snapshots.

Everything runs against the real PostgreSQL of tests/conftest.py; no mocks.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sqlrunner

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

BASELINE = SQL_DIR / "forward" / "0001_baseline.sql"
FORWARD = SQL_DIR / "forward" / "0002_llm_management.sql"
FORWARD_INDEXES = SQL_DIR / "forward" / "0003_llm_management_indexes.sql"
ROLLBACK = SQL_DIR / "rollback" / "0002_llm_management.sql"
ROLLBACK_INDEXES = SQL_DIR / "rollback" / "0003_llm_management_indexes.sql"
SEED = SQL_DIR / "seed" / "0001_tier_model_rules.sql"
VERIFY = SQL_DIR / "verify" / "0003_llm_management.sql"

BASELINE_TABLES = ("llm_providers", "model_servers", "llm_usage_logs")
NEW_TABLES = (
    "installed_models",
    "model_deployments",
    "model_permissions",
    "tier_model_rules",
    "model_pricing",
    "daily_cost_summary",
    "audit_log",
)
TIERS = ("free", "trial", "starter", "professional", "enterprise")

# The 48 indexes 0002 and 0003 add, by table (the verify file lists the same names).
NEW_INDEXES: dict[str, tuple[str, ...]] = {
    "installed_models": (
        "installed_models_pkey",
        "installed_models_server_id_model_name_key",
        "installed_models_model_name_idx",
        "installed_models_status_updated_at_idx",
        "installed_models_server_id_last_used_at_idx",
        "installed_models_digest_idx",
    ),
    "model_deployments": (
        "model_deployments_pkey",
        "model_deployments_deployment_name_key",
        "model_deployments_server_id_model_name_status_idx",
        "model_deployments_status_health_status_idx",
        "model_deployments_health_check_due_idx",
        "model_deployments_routing_idx",
        "model_deployments_server_id_gpu_id_idx",
    ),
    "model_permissions": (
        "model_permissions_pkey",
        "model_permissions_subject_provider_model_key",
        "model_permissions_provider_model_pattern_idx",
        "model_permissions_expires_at_idx",
        "model_permissions_granted_by_created_at_idx",
    ),
    "tier_model_rules": (
        "tier_model_rules_pkey",
        "tier_model_rules_tier_provider_model_pattern_key",
        "tier_model_rules_provider_model_pattern_idx",
    ),
    "model_pricing": (
        "model_pricing_pkey",
        "model_pricing_provider_model_effective_from_key",
        "model_pricing_model_idx",
        "model_pricing_effective_to_idx",
    ),
    "daily_cost_summary": (
        "daily_cost_summary_pkey",
        "daily_cost_summary_day_user_provider_model_key",
        "daily_cost_summary_user_id_usage_date_idx",
        "daily_cost_summary_provider_model_usage_date_idx",
        "daily_cost_summary_organization_id_usage_date_idx",
    ),
    "audit_log": (
        "audit_log_pkey",
        "audit_log_occurred_at_brin",
        "audit_log_actor_idx",
        "audit_log_target_idx",
        "audit_log_action_occurred_at_idx",
        "audit_log_request_id_idx",
        "audit_log_details_gin",
    ),
    "llm_usage_logs": (
        "llm_usage_logs_server_id_created_at_idx",
        "llm_usage_logs_deployment_id_created_at_idx",
        "llm_usage_logs_provider_model_created_at_idx",
        "llm_usage_logs_source_created_at_idx",
        "llm_usage_logs_failed_created_at_idx",
    ),
    "model_servers": (
        "model_servers_host_port_key",
        "model_servers_enabled_status_last_seen_at_idx",
        "model_servers_location_status_idx",
        "model_servers_gpu_id_idx",
    ),
    "llm_providers": (
        "llm_providers_provider_type_is_active_idx",
        "llm_providers_metadata_gin",
    ),
}
ALL_NEW_INDEXES = tuple(name for names in NEW_INDEXES.values() for name in names)

Snapshot = dict[str, list[tuple[Any, ...]]]
_shared_numbers = itertools.count(1)

# The catalog of schema public as DBAs compare it, minus sqlrunner's own ledger tables
# and minus physical facts (attnum gaps left by dropped columns, OIDs, relfilenodes).
SNAPSHOT_QUERIES: dict[str, str] = {
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.reloptions::text, c.relacl::text,
               obj_description(c.oid, 'pg_class')
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname NOT LIKE 'sqlrunner%%'
        ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attcollation::regcollation::text, a.attacl::text,
               col_description(c.oid, a.attnum),
               rank() OVER (PARTITION BY c.oid ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
          AND c.relname NOT LIKE 'sqlrunner%%' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 11""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.convalidated,
               k.condeferrable, k.condeferred
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname NOT LIKE 'sqlrunner%%'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid,
               x.indisready, x.indisprimary, x.indisunique
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        WHERE t.relnamespace = 'public'::regnamespace AND t.relname NOT LIKE 'sqlrunner%%'
        ORDER BY 1, 2""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
        ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
               p.proacl::text, obj_description(p.oid, 'pg_proc')
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
        ORDER BY 1, 2""",
    "sequences": """
        SELECT c.relname, s.seqtypid::regtype::text, s.seqincrement, s.seqmin, s.seqmax
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname NOT LIKE 'sqlrunner%%'
        ORDER BY 1""",
    "schema_acl": """
        SELECT n.nspname, n.nspacl::text FROM pg_namespace n WHERE n.nspname = 'public'""",
}


def snapshot(dsn: str) -> Snapshot:
    """The catalog of schema public: tables, columns, constraints, indexes, triggers,
    functions (with definitions), sequences and ACLs, in a comparable form."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in SNAPSHOT_QUERIES.items()}


def table_rows(dsn: str, tables: tuple[str, ...] = BASELINE_TABLES) -> dict[str, list[Any]]:
    """Every row of ``tables`` (all columns, by primary key): for 'data intact' checks."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            table: conn.execute(f"SELECT * FROM public.{table} ORDER BY id").fetchall()
            for table in tables
        }


def run_psql(psql: list[str], dsn: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Run one file as a DBA would: ``psql -X -q -v ON_ERROR_STOP=1 -f FILE``; must succeed."""
    result = subprocess.run(
        [*psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"psql -f {path.name} failed:\n{result.stderr}"
    return result


def execute(dsn: str, *statements: str) -> None:
    """Run statements in autocommit, as a separate session would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def server_version(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.info.server_version


def insert_baseline_data(dsn: str) -> None:
    """Rows in the three baseline tables, with NULLs and non-defaults, as production has."""
    execute(
        dsn,
        "INSERT INTO llm_providers (name, provider_type, base_url, is_active) VALUES"
        " ('openai-main', 'openai', 'https://api.openai.com/v1', true),"
        " ('groq', 'groq', NULL, false), ('local', 'ollama', 'http://ollama:11434', true)",
        "INSERT INTO model_servers (name, server_type, base_url, status, last_seen_at) VALUES"
        " ('gpu-1', 'ollama', 'http://gpu-1:11434', 'online', '2025-01-02 03:04:05+00'),"
        " ('gpu-2', 'vllm', 'http://gpu-2:8000', 'unknown', NULL)",
        "INSERT INTO llm_usage_logs (provider_id, user_id, model, request_type, prompt_tokens,"
        " completion_tokens, status, error_message, created_at)"
        " SELECT 1 + g % 3, nullif(g % 7, 0), 'model-' || g % 5, 'chat', g, 2 * g,"
        " CASE WHEN g % 11 = 0 THEN 'error' ELSE 'success' END,"
        " CASE WHEN g % 11 = 0 THEN 'boom ' || g END,"
        " timestamptz '2025-01-01 00:00:00+00' + g * interval '1 minute'"
        " FROM generate_series(1, 500) AS g",
    )


@pytest.fixture
def baseline_dsn(dsn: str, psql: list[str]) -> str:
    """A fresh database holding only the baseline, by psql."""
    run_psql(psql, dsn, BASELINE)
    return dsn


@pytest.fixture
def forward_dsn(baseline_dsn: str, psql: list[str]) -> str:
    """Baseline + 0002 + 0003 + seed, each by psql (no sqlrunner ledger in the way)."""
    for path in (FORWARD, FORWARD_INDEXES, SEED):
        run_psql(psql, baseline_dsn, path)
    return baseline_dsn


@pytest.fixture(scope="module")
def shared_applied_dsn(pg_server: Any, template_db: str) -> Iterator[str]:
    """One database per module after ``sqlrunner.apply`` of the whole set (forward files,
    seed, verify), for tests that only read or whose changes are refused anyway."""
    name = f"t_{os.getpid()}_shared_{next(_shared_numbers)}"
    with pg_server.janitor(name, template_dbname=template_db):
        dsn = pg_server.dsn(name)
        sqlrunner.apply(dsn, SQL_DIR)
        yield dsn


@pytest.fixture(scope="session")
def applied_template(pg_server: Any, template_db: str) -> Iterator[str]:
    """A template database after ``sqlrunner.apply`` of the whole set, built once."""
    name = f"t_{os.getpid()}_applied_template"
    with pg_server.janitor(name, template_dbname=template_db):
        sqlrunner.apply(pg_server.dsn(name), SQL_DIR)
        yield name


@pytest.fixture
def applied(pg_server: Any, applied_template: str) -> Iterator[str]:
    """A fresh database as ``sqlrunner.apply`` leaves it (ledger included): a clone of
    applied_template, so each test may damage it."""
    name = f"t_{os.getpid()}_applied_{next(_shared_numbers)}"
    with pg_server.janitor(name, template_dbname=applied_template):
        yield pg_server.dsn(name)
