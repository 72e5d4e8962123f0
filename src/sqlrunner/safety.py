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

from .sqltext import Script, dropped_objects, inserted_rows


def seed_row_counts(seed_scripts: Sequence[Script]) -> dict[str, int]:
    """How many rows the seed files insert per table (by unqualified table name)."""
    counts: dict[str, int] = {}
    for script in seed_scripts:
        for statement in script.statements:
            inserted = inserted_rows(statement)
            if inserted is not None:
                _schema, table, rows = inserted
                counts[table] = counts.get(table, 0) + rows
    return counts


def data_at_risk(
    conn: psycopg.Connection[tuple[Any, ...]],
    rollback_scripts: Sequence[Script],
    seed_scripts: Sequence[Script],
) -> list[str]:
    """One line per table or column that would take data with it, e.g. ``table notes: 2 rows``.

    One scan per table: the row count and every dropped column's non-null count
    come from the same ``SELECT count(*), count(a), count(b) FROM t``.
    """
    seeded = seed_row_counts(seed_scripts)
    wanted: dict[tuple[str | None, str], list[str | None]] = {}
    for script in rollback_scripts:
        for statement in script.statements:
            dropped_tables, dropped_columns = dropped_objects(statement)
            for schema, table in dropped_tables:
                wanted.setdefault((schema, table), []).insert(0, None)
            for schema, table, column_name in dropped_columns:
                wanted.setdefault((schema, table), []).append(column_name)
    losses: list[str] = []
    for (schema, table), targets in wanted.items():
        counts = _counts(conn, schema, table, list(dict.fromkeys(targets)))
        seed_rows = seeded.get(table, 0)
        for column, count in counts.items():
            if count <= seed_rows:
                continue
            if column is None:
                extra = f" ({seed_rows} from seeds)" if table in seeded else ""
                losses.append(f"table {table}: {count} rows{extra}")
            else:
                losses.append(
                    f"column {table}.{column}: {count} values besides NULL and its default"
                )
    return losses


def _counts(
    conn: psycopg.Connection[tuple[Any, ...]],
    schema: str | None,
    table: str,
    columns: list[str | None],
) -> dict[str | None, int]:
    """Rows (key None), and per column the values that are neither NULL nor its default.

    A value equal to the column's default carries no information (every row got
    it when the column was added), so dropping it loses nothing.
    """
    name = ".".join(sql.Identifier(p).as_string(conn) for p in (schema, table) if p)
    existing = conn.execute(
        "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (name,),
    ).fetchall()
    if not existing:
        return {}  # the table is gone already (a re-run after a partial rollback)
    defaults = {row[0]: row[1] for row in existing}
    kept = [c for c in columns if c is None or c in defaults]
    if not kept:
        return {}
    counters: list[sql.Composable] = []
    for column in kept:
        if column is None:
            counters.append(sql.SQL("count(*)"))
        elif defaults[column] is None:
            counters.append(sql.SQL("count({})").format(sql.Identifier(column)))
        else:  # the expression comes from the catalog (pg_get_expr), not from a user;
            # compared as text, which every type has (json, for one, has no "=")
            counters.append(
                sql.SQL(
                    "count(*) FILTER (WHERE {0} IS NOT NULL"
                    " AND {0}::text IS DISTINCT FROM ({1})::text)"
                ).format(sql.Identifier(column), sql.SQL(str(defaults[column])))
            )
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(counters), sql.SQL(name))
    row = conn.execute(query).fetchone()
    return dict(zip(kept, row or (), strict=True))
