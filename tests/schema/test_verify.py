"""sql/verify/0003: all checks pass after a full apply; each kind of damage fails the
check that covers it, and the detail says what is wrong."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import sqlrunner

from .conftest import execute

EXPECTED_CHECKS = [
    "tables: the 10 llm management tables exist",
    "indexes: the 48 llm management indexes exist",
    "indexes: the 48 llm management indexes are valid and ready",
    "constraints: the 10 NOT VALID constraints of 0002 are validated",
    "audit_log: append-only trigger present and enabled always",
    "audit_log: PUBLIC lacks UPDATE, DELETE, TRUNCATE",
    "audit_log: no role but the owner holds UPDATE, DELETE, TRUNCATE",
    "llm_tier_allows: present, STABLE, search_path pinned",
    "tier_model_rules: 50 rules over the 5 tiers",
    # verify/0004 (the backfill)
    "llm_usage_logs: every row has its provider",
    "llm_usage_logs: cost_usd is NULL only where no USD price was in effect",
]


def _failed_checks(dsn: str, sql_dir: Path) -> dict[str, str]:
    """check -> detail of every failed check; verify must raise VerificationFailed."""
    with pytest.raises(sqlrunner.VerificationFailed) as failure:
        sqlrunner.verify(dsn, sql_dir)
    report = failure.value.report
    assert isinstance(report, sqlrunner.VerifyReport)
    return {c.check: c.detail for c in report.checks if not c.ok}


def test_all_checks_pass_after_full_apply(applied: str, sql_dir: Path) -> None:
    report = sqlrunner.verify(applied, sql_dir)
    assert [c.check for c in report.checks] == EXPECTED_CHECKS
    assert [c.check for c in report.checks if not c.ok] == []
    by_check = {c.check: c.detail for c in report.checks}
    assert by_check["indexes: the 48 llm management indexes exist"] == "48 of 48 present"


@pytest.mark.parametrize("index", ["llm_usage_logs_source_created_at_idx", "audit_log_pkey"])
def test_dropped_index_fails_its_check_by_name(applied: str, sql_dir: Path, index: str) -> None:
    table = next(t for t in ("llm_usage_logs", "audit_log") if index.startswith(t))
    if index.endswith("_pkey"):
        execute(applied, f"ALTER TABLE {table} DROP CONSTRAINT {index}")
    else:
        execute(applied, f"DROP INDEX CONCURRENTLY {index}")
    failed = _failed_checks(applied, sql_dir)
    assert list(failed) == ["indexes: the 48 llm management indexes exist"]
    assert failed["indexes: the 48 llm management indexes exist"] == (
        f"47 of 48 present; missing: {table}.{index}"
    )


def test_invalid_leftover_index_fails_the_validity_check(applied: str, sql_dir: Path) -> None:
    """A failed concurrent build leaves an INVALID index under the expected name."""
    execute(
        applied,
        "DROP INDEX CONCURRENTLY model_servers_host_port_key",
        "INSERT INTO model_servers (name, base_url, host, port) VALUES"
        " ('a', 'http://a', 'h', 1), ('b', 'http://b', 'h', 1)",
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        execute(
            applied,
            "CREATE UNIQUE INDEX CONCURRENTLY model_servers_host_port_key"
            " ON model_servers (host, port)",
        )
    failed = _failed_checks(applied, sql_dir)
    assert failed == {
        "indexes: the 48 llm management indexes are valid and ready": "invalid or not ready (drop it, then re-run 0003): model_servers_host_port_key",
    }


SABOTAGE: dict[str, tuple[str, str, str]] = {
    # name: (statement, failing check, text its detail must contain)
    "trigger only enabled at origin": (
        "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only",
        "audit_log: append-only trigger present and enabled always",
        "enabled=O (want A)",
    ),
    "trigger dropped": (
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "audit_log: append-only trigger present and enabled always",
        "trigger audit_log_append_only is missing",
    ),
    "public may delete": (
        "GRANT DELETE, TRUNCATE ON audit_log TO PUBLIC",
        "audit_log: PUBLIC lacks UPDATE, DELETE, TRUNCATE",
        "PUBLIC holds DELETE, TRUNCATE",
    ),
    "a role may update": (
        "CREATE ROLE verify_app_role_{db}; GRANT UPDATE ON audit_log TO verify_app_role_{db}",
        "audit_log: no role but the owner holds UPDATE, DELETE, TRUNCATE",
        "verify_app_role_{db} holds UPDATE",
    ),
    "constraint not validated": (
        "ALTER TABLE llm_usage_logs DROP CONSTRAINT llm_usage_logs_source_check;"
        " ALTER TABLE llm_usage_logs ADD CONSTRAINT llm_usage_logs_source_check"
        " CHECK (source <> '') NOT VALID",
        "constraints: the 10 NOT VALID constraints of 0002 are validated",
        "llm_usage_logs.llm_usage_logs_source_check",
    ),
    "a stray rule": (
        "INSERT INTO tier_model_rules (tier, provider, model_pattern, effect, tier_price_usd,"
        " billing_period) VALUES ('trial', 'openai', 'gpt-4o-mini', 'allow', 1, 'week')",
        "tier_model_rules: 50 rules over the 5 tiers",
        "51 rules; enterprise 9, free 6",
    ),
    "function made volatile": (
        "ALTER FUNCTION llm_tier_allows(text, text, text) VOLATILE",
        "llm_tier_allows: present, STABLE, search_path pinned",
        "volatility v (want s)",
    ),
    "table dropped": (
        "DROP TABLE model_pricing",
        "tables: the 10 llm management tables exist",
        "missing: model_pricing",
    ),
}


@pytest.mark.parametrize("sabotage", list(SABOTAGE))
def test_damage_fails_the_check_that_covers_it(applied: str, sql_dir: Path, sabotage: str) -> None:
    statement, check, detail = SABOTAGE[sabotage]
    db = str(conninfo_to_dict(applied)["dbname"])  # role names are cluster-wide: make unique
    execute(applied, statement.format(db=db))
    try:
        failed = _failed_checks(applied, sql_dir)
    finally:
        if "{db}" in statement:
            execute(
                applied, f"DROP OWNED BY verify_app_role_{db}", f"DROP ROLE verify_app_role_{db}"
            )
    assert check in failed, failed
    assert detail.format(db=db) in failed[check]
