"""Derived columns in the rollback data-loss check (dataloss.py).

A batched file's header may say ``derived=provider,cost_usd``: the backfill fills
those columns with values computed from other data, so the next apply computes
them again. Two consequences for a rollback:

- a rollback ``UPDATE`` that overwrites columns destroys their values, which is data
  at risk (counted: "up to N values"), unless every column it sets is derived;
- dropping a derived column (the rollback of the file that added it) loses nothing
  a re-apply does not recompute: it is not counted.

Plain SELECTs only, like the rest of the check.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from .batched import parse_header
from .files import Migration, is_batched
from .seedrows import quoted_name
from .sqltext import Script


def derived_columns(
    conn: psycopg.Connection[tuple[Any, ...]], forward: Sequence[Migration]
) -> dict[int, frozenset[str]]:
    """Table oid -> the columns batched forward files declare derived (tables that exist)."""
    by_oid: dict[int, frozenset[str]] = {}
    for m in forward:
        if not is_batched(m):
            continue
        try:
            spec = parse_header(m.text.split("\n", 1)[0].rstrip())
        except ValueError:  # refused when it runs; nothing to learn from it here
            continue
        if not spec.derived:
            continue
        row = conn.execute(
            "SELECT to_regclass(%s)::oid", (spec.table_sql.as_string(conn),)
        ).fetchone()
        if row is not None and row[0] is not None:
            by_oid[int(row[0])] = by_oid.get(int(row[0]), frozenset()) | set(spec.derived)
    return by_oid


def overwritten(
    conn: psycopg.Connection[tuple[Any, ...]],
    rollback_scripts: Sequence[Script],
    derived: dict[int, frozenset[str]],
) -> Iterator[str]:
    """One line per column a rollback UPDATE overwrites that holds values and is not
    derived: ``column public.t.c: up to 3 values overwritten by UPDATE ... at rollback/..``."""
    for script in rollback_scripts:
        for statement in script.statements:
            if statement.kind != "UpdateStmt":
                continue
            fields = statement.fields
            columns = [
                str(t["ResTarget"]["name"])
                for t in fields.get("targetList", ())
                if "ResTarget" in t
            ]
            row = conn.execute(
                "SELECT c.oid, c.oid::regclass::text FROM pg_catalog.pg_class c "
                "WHERE c.oid = to_regclass(%s)",
                (quoted_name(fields["relation"]),),
            ).fetchone()
            if row is None:
                continue
            oid, table = int(row[0]), str(row[1])
            at_risk = [c for c in dict.fromkeys(columns) if c not in derived.get(oid, ())]
            if not at_risk:
                continue
            where = f"{script.migration.display_path}:{statement.line}"
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.SQL("count({})").format(sql.Identifier(c)) for c in at_risk),
                sql.SQL(table),  # regclass::text: quoted as needed by PostgreSQL
            )
            try:
                counts = conn.execute(query).fetchone()
            except psycopg.Error as exc:
                yield f"{where}: the values this UPDATE overwrites could not be counted ({exc})"
                continue
            summary = " ".join(statement.text.split())[:80]
            for column, count in zip(at_risk, counts or (), strict=False):
                if count:
                    yield (
                        f"column {table}.{column}: up to {count} values overwritten "
                        f"by {summary} at {where}"
                    )
