"""The rollback data-loss check: which tables and columns about to be dropped hold data.

It runs before the runner takes any lock, reading counts with plain SELECTs
(ACCESS SHARE, which blocks no writer). Rows a seed file inserts count as seed
data, not as data at risk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from .sqltext import Script, dropped_objects, inserted_tables


def seed_row_counts(seed_scripts: Sequence[Script]) -> dict[str, int]:
    """How many rows the seed files insert per table (by unqualified table name)."""
    counts: dict[str, int] = {}
    for script in seed_scripts:
        for statement in script.statements:
            for _schema, table in inserted_tables(statement):
                select = getattr(statement.node, "selectStmt", None)
                rows = len(getattr(select, "valuesLists", None) or ())
                counts[table] = counts.get(table, 0) + rows
    return counts


def data_at_risk(
    conn: psycopg.Connection[tuple[Any, ...]],
    rollback_scripts: Sequence[Script],
    seed_scripts: Sequence[Script],
) -> list[str]:
    """One line per table or column that would take data with it, e.g. ``audit_log: 12 rows``."""
    seeded = seed_row_counts(seed_scripts)
    losses: list[str] = []
    for script in rollback_scripts:
        for statement in script.statements:
            tables, columns = dropped_objects(statement)
            for schema, table in tables:
                count = _count(conn, schema, table, None)
                if count is not None and count > seeded.get(table, 0):
                    extra = f" ({seeded[table]} from seeds)" if table in seeded else ""
                    losses.append(f"table {table}: {count} rows{extra}")
            for schema, table, column in columns:
                count = _count(conn, schema, table, column)
                if count and count > seeded.get(table, 0):
                    losses.append(f"column {table}.{column}: {count} non-null values")
    return losses


def _count(
    conn: psycopg.Connection[tuple[Any, ...]], schema: str | None, table: str, column: str | None
) -> int | None:
    """Rows (or non-null values of ``column``); None when the table or column does not exist."""
    name = ".".join(sql.Identifier(p).as_string(conn) for p in (schema, table) if p)
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AND (%s::text IS NULL OR EXISTS ("
        " SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s"
        " AND NOT attisdropped))",
        (name, column, name, column),
    ).fetchone()
    if row is None or not row[0]:
        return None
    relation = sql.SQL(name)
    query = (
        sql.SQL("SELECT count(*) FROM {}").format(relation)
        if column is None
        else sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL").format(
            relation, sql.Identifier(column)
        )
    )
    result = conn.execute(query).fetchone()
    return int(result[0]) if result else 0
