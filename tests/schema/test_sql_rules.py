"""SQL_RULES.md checks squawk cannot make: file structure, statement and lock order,
no rewrite or scan of the busy table, types, and the baseline's no-op on production."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from pglast import parse_sql, split

from .conftest import (
    BASELINE,
    BASELINE_TABLES,
    FORWARD,
    FORWARD_INDEXES,
    ROLLBACK,
    ROLLBACK_INDEXES,
    SEED,
    SQL_DIR,
    VERIFY,
    insert_baseline_data,
    run_psql,
)

TRANSACTIONAL = (BASELINE, FORWARD, ROLLBACK, SEED)
NO_TRANSACTION = (FORWARD_INDEXES, ROLLBACK_INDEXES)
MARK = "-- sqlrunner: no-transaction"


def _kinds(path: Path) -> list[tuple[str, object]]:
    """(node type name, node) of every top-level statement, by PostgreSQL's parser."""
    return [
        (type(raw.stmt).__name__, raw.stmt) for raw in parse_sql(path.read_text(encoding="utf-8"))
    ]


def _body(path: Path) -> list[str]:
    """The statements between BEGIN and COMMIT, as sqlrunner runs them."""
    statements = list(split(path.read_text(encoding="utf-8")))
    begin = statements.index("BEGIN")
    assert statements[-1] == "COMMIT"
    return statements[begin + 1 : -1]


@pytest.mark.parametrize("path", TRANSACTIONAL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_transactional_file_is_one_begin_commit(path: Path) -> None:
    kinds = _kinds(path)
    names = [name for name, _ in kinds]
    begin = names.index("TransactionStmt")
    assert all(name == "VariableSetStmt" for name in names[:begin])
    assert {getattr(node, "name", None) for _, node in kinds[:begin]} <= {
        "lock_timeout",
        "statement_timeout",
    }
    assert kinds[begin][1].kind.name == "TRANS_STMT_BEGIN"  # type: ignore[attr-defined]
    assert names[-1] == "TransactionStmt" and names.count("TransactionStmt") == 2
    assert not path.read_text(encoding="utf-8").startswith(MARK)


@pytest.mark.parametrize("path", NO_TRANSACTION, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_transaction_file_holds_only_rerunnable_statements(path: Path) -> None:
    assert path.read_text(encoding="utf-8").split("\n", 1)[0] == MARK
    for name, node in _kinds(path):
        if name == "IndexStmt":
            assert getattr(node, "concurrent", False) and getattr(node, "if_not_exists", False)
        elif name == "DropStmt":
            assert getattr(node, "concurrent", False) and getattr(node, "missing_ok", False)
        elif name == "AlterTableStmt":
            commands = getattr(node, "cmds", ())
            assert all(c.subtype.name == "AT_ValidateConstraint" for c in commands)
        else:
            assert name == "VariableSetStmt", name


def test_verify_file_only_reads() -> None:
    assert {name for name, _ in _kinds(VERIFY)} == {"SelectStmt"}


def test_no_forbidden_constructs_anywhere() -> None:
    for path in sorted(SQL_DIR.rglob("*.sql")):
        code = "\n".join(line.split("--", 1)[0] for line in path.read_text("utf-8").splitlines())
        for forbidden in (
            r"\bCREATE\s+(OR\s+REPLACE\s+)?RULE\b",
            r"\bmoney\b",
            r"\bvarchar\b",
            r"\bcharacter varying\b",
            r"\bserial\b",
            r"\bbigserial\b",
            r"\btimestamp\b(?!tz)",
            r"\bfloat\b",
            r"\bdouble precision\b",
            r"\breal\b",
        ):
            assert not re.search(forbidden, code, re.IGNORECASE), (path.name, forbidden)


def test_every_foreign_key_says_on_delete() -> None:
    for path in (BASELINE, FORWARD):
        code = path.read_text(encoding="utf-8")
        for match in re.finditer(r"REFERENCES public\.\w+ \([\w, ]+\)(?P<rest>[^,;$]*)", code):
            assert "ON DELETE" in match["rest"], match.group(0)


def test_catalog_types_follow_the_rules(forward_dsn: str) -> None:
    with psycopg.connect(forward_dsn, autocommit=True) as conn:
        bad_types = conn.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
            " AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid = ANY("
            "'{money,varchar,bpchar,timestamp,float4,float8,json}'::regtype[])"
        ).fetchall()
        bad_jsonb = conn.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
            " AND a.atttypid = 'jsonb'::regtype AND NOT a.attisdropped"
            " AND NOT (a.attnotnull AND pg_get_expr(d.adbin, d.adrelid) = '''{}''::jsonb')"
        ).fetchall()
        keys_without_identity = conn.execute(
            "SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
            " AND a.attname = 'id' AND a.attidentity <> 'a'"
        ).fetchall()
        status_without_check = conn.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c"
            " ON c.oid = a.attrelid WHERE c.relnamespace = 'public'::regnamespace"
            " AND c.relkind = 'r' AND NOT a.attisdropped AND a.attnum > 0"
            " AND (a.attname IN ('status', 'effect', 'access', 'tier', 'provider', 'source')"
            "      OR a.attname LIKE '%%\\_type' OR a.attname LIKE '%%\\_status'"
            "      OR a.attname LIKE '%%\\_period')"
            " AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid"
            "   AND k.contype = 'c' AND a.attnum = ANY(k.conkey))"
        ).fetchall()
        rules = conn.execute("SELECT rulename FROM pg_rules WHERE schemaname = 'public'")
        assert rules.fetchall() == []
    assert bad_types == []
    assert bad_jsonb == []
    assert keys_without_identity == []
    assert status_without_check == []


def _lock_trace(dsn: str, body: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Run the statements in one transaction (rolled back); for each baseline table the
    index of the statement that first locked it, and of the one that first held it
    ACCESS EXCLUSIVE."""
    first_lock: dict[str, int] = {}
    first_exclusive: dict[str, int] = {}
    with psycopg.connect(dsn) as conn:
        for index, statement in enumerate(body):
            conn.execute(statement)
            held = conn.execute(
                "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE l.pid = pg_backend_pid() AND c.relname = ANY(%s)",
                (list(BASELINE_TABLES),),
            ).fetchall()
            for table, mode in held:
                first_lock.setdefault(table, index)
                if mode == "AccessExclusiveLock":
                    first_exclusive.setdefault(table, index)
        conn.rollback()
    return first_lock, first_exclusive


def test_forward_locks_existing_tables_last_in_application_order(baseline_dsn: str) -> None:
    body = _body(FORWARD)
    first_lock, first_exclusive = _lock_trace(baseline_dsn, body)
    first = min(first_lock.values())
    # everything on the new tables runs before the first lock on an existing table, and
    # then there is one statement (one ALTER TABLE) per existing table
    assert len(body) - first == 3
    assert first_exclusive == {
        "llm_usage_logs": first,
        "model_servers": first + 1,
        "llm_providers": first + 2,
    }
    assert (
        [
            re.search(r"ALTER TABLE public\.(\w+) '", s)[1]  # type: ignore[index]
            for s in body[first:]
        ]
        == ["llm_usage_logs", "model_servers", "llm_providers"]
    )


def test_rollback_locks_existing_tables_last_in_application_order(
    forward_dsn: str, psql: list[str]
) -> None:
    run_psql(psql, forward_dsn, ROLLBACK_INDEXES)
    body = _body(ROLLBACK)
    first_lock, first_exclusive = _lock_trace(forward_dsn, body)
    first = min(first_lock.values())
    assert all(re.match(r"DROP (TABLE|FUNCTION)", s) for s in body[:first])
    # dropping llm_usage_logs' foreign key to model_servers locks model_servers in the same
    # statement, after llm_usage_logs: the application's order
    assert first_exclusive["llm_usage_logs"] == first
    assert first <= first_exclusive["model_servers"] < first_exclusive["llm_providers"]
    assert body[first].startswith("ALTER TABLE IF EXISTS public.llm_usage_logs")


def test_forward_neither_rewrites_nor_scans_the_busy_table(baseline_dsn: str) -> None:
    """0002's statements in one transaction (rolled back), measured from inside it:
    pg_stat_xact_user_tables counts this transaction's own scans, and a rewrite would
    give the table a new relfilenode at once."""
    insert_baseline_data(baseline_dsn)
    filenodes = (
        "SELECT relname, pg_relation_filenode(oid) FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%s) ORDER BY 1"
    )
    tables = (list(BASELINE_TABLES),)
    with psycopg.connect(baseline_dsn) as conn:
        before = conn.execute(filenodes, tables).fetchall()
        for statement in _body(FORWARD):
            conn.execute(statement)
        scans = conn.execute(
            "SELECT relname, seq_scan FROM pg_stat_xact_user_tables"
            " WHERE relname = ANY(%s) AND seq_scan > 0",
            tables,
        ).fetchall()
        after = conn.execute(filenodes, tables).fetchall()
        defaults = conn.execute(
            "SELECT a.attname, a.atthasdef, a.attnotnull FROM pg_attribute a"
            " WHERE a.attrelid = 'public.llm_usage_logs'::regclass"
            " AND a.attname IN ('server_id', 'deployment_id') ORDER BY 1"
        ).fetchall()
        not_valid = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE NOT convalidated"
            " AND conrelid = ANY('{llm_usage_logs,model_servers,llm_providers}'::regclass[])"
        ).fetchone()
        conn.rollback()
    assert len(before) == 3 and after == before, "0002 rewrote an existing table"
    assert scans == [], "0002 scanned an existing table"
    # new FK columns: nullable, no default (valid at once without a scan)
    assert defaults == [("deployment_id", False, False), ("server_id", False, False)]
    assert not_valid == (10,)  # validated by 0003, outside the transaction


def test_baseline_is_a_no_op_without_locks_on_production(baseline_dsn: str) -> None:
    """A plain CREATE INDEX IF NOT EXISTS would take SHARE on llm_usage_logs (blocking
    writers) even when the index exists; the baseline takes no lock on any of the tables."""
    insert_baseline_data(baseline_dsn)
    first_lock, _ = _lock_trace(baseline_dsn, _body(BASELINE))
    assert first_lock == {}


def test_baseline_refuses_a_blocking_index_build_on_a_populated_table(
    baseline_dsn: str, psql: list[str]
) -> None:
    insert_baseline_data(baseline_dsn)
    with psycopg.connect(baseline_dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX llm_usage_logs_user_id_created_at_idx")
    with pytest.raises(AssertionError, match="lacks baseline index"):
        run_psql(psql, baseline_dsn, BASELINE)
