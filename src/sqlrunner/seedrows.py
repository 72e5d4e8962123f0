"""Seed data as the rollback data-loss check needs it: the rows seed files write, and a
table's rows counted apart from them (dataloss.py).

Rows count as seed data, not data at risk, only when they equal a seed file's
rows, compared column by column (as text after a cast to the column's type), with
duplicates matched one for one: three customer rows are not seed data because a
seed happens to insert three rows. Only constants can be compared (``now()``,
``DEFAULT`` or a subquery cannot), and ``INSERT ... SELECT`` writes rows that
cannot be known in advance, so its table's rows count as data.

Plain SELECTs only: the check runs before the runner takes any lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .session import identifier
from .sqltext import Script

COLUMNS_QUERY = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


@dataclass(frozen=True, slots=True)
class SeedRows:
    """Rows a seed INSERT writes into one table; ``None`` columns follow the table's order."""

    table: str
    columns: tuple[str, ...] | None
    rows: tuple[tuple[str | _Unknown | None, ...], ...]


class _Unknown:
    """A value that is not a constant (now(), DEFAULT, a subquery): it cannot be compared."""


UNKNOWN = _Unknown()


def quoted_name(rangevar: Mapping[str, Any]) -> str:
    """The quoted name of a parse tree's RangeVar (``INSERT INTO``, ``TRUNCATE`` ...)."""
    parts = [rangevar["schemaname"]] if rangevar.get("schemaname") else []
    return identifier(*parts, rangevar["relname"])


def seed_rows(
    conn: psycopg.Connection[tuple[Any, ...]], scripts: Sequence[Script]
) -> list[tuple[int, SeedRows]]:
    """Every seed INSERT ... VALUES, with the oid of the table it fills (if it exists)."""
    found: list[SeedRows] = []
    for script in scripts:
        for statement in script.statements:
            if statement.kind != "InsertStmt":
                continue
            fields = statement.fields
            values = fields.get("selectStmt", {}).get("SelectStmt", {}).get("valuesLists")
            if not values:
                continue  # INSERT ... SELECT: its rows cannot be known in advance
            columns = None
            if fields.get("cols"):
                targets = [c["ResTarget"] for c in fields["cols"]]
                names = [str(t["name"]) if not t.get("indirection") else "" for t in targets]
                columns = tuple(names)
            rows = tuple(tuple(_constant(item) for item in row["List"]["items"]) for row in values)
            found.append(SeedRows(quoted_name(fields["relation"]), columns, rows))
    if not found:
        return []
    oids = conn.execute(
        "SELECT to_regclass(name)::oid FROM unnest(%s::text[]) WITH ORDINALITY AS u(name, i) "
        "ORDER BY i",
        ([seed.table for seed in found],),
    ).fetchall()
    return [(int(row[0]), seed) for row, seed in zip(oids, found, strict=True) if row[0]]


def _constant(node: Mapping[str, Any]) -> str | _Unknown | None:
    """A constant's text (None for NULL), as PostgreSQL would read it; else UNKNOWN."""
    if "TypeCast" in node:
        return _constant(node["TypeCast"]["arg"])
    const = node.get("A_Const")
    if const is None:
        return UNKNOWN
    if const.get("isnull"):
        return None
    # protobuf leaves out zero values: {"ival": {}} is 0, {"boolval": {}} is false
    if "ival" in const:
        return str(const["ival"].get("ival", 0))
    if "fval" in const:
        return str(const["fval"].get("fval", "0"))
    if "sval" in const:
        return str(const["sval"].get("sval", ""))
    if "boolval" in const:
        return "true" if const["boolval"].get("boolval") else "false"
    return UNKNOWN  # bit strings and anything newer


@dataclass(frozen=True, slots=True)
class Column:
    """A table column as the counts need it: name, SQL type, default expression."""

    name: str
    type: str
    default: str | None


def columns_of(conn: psycopg.Connection[tuple[Any, ...]], oid: int) -> list[Column]:
    """A table's columns in order, with their types and defaults."""
    return [Column(*row) for row in conn.execute(COLUMNS_QUERY, (oid,)).fetchall()]


def seed_keys(
    oid: int,
    table_columns: list[Column],
    seeds: list[tuple[int, SeedRows]],
) -> tuple[list[Column], list[list[str | None]] | None]:
    """The columns to compare on and each seed row's values in them (None: no seed here).

    Only columns every seed statement of this table sets to a constant in every row
    are compared; a seed whose rows cannot be compared at all leaves its table's
    rows counted as data.
    """
    mine = [
        (list(seed.columns) if seed.columns else [c.name for c in table_columns], seed)
        for table, seed in seeds
        if table == oid
    ]
    if not mine:
        return [], None
    comparable: set[str] | None = None
    for names, seed in mine:
        constant = {
            n
            for i, n in enumerate(names)
            if n and all(i < len(r) and not isinstance(r[i], _Unknown) for r in seed.rows)
        }
        comparable = constant if comparable is None else comparable & constant
    key = [c for c in table_columns if c.name in (comparable or set())]
    if not key:
        return [], []
    keys: list[list[str | None]] = []
    for names, seed in mine:
        position = {n: i for i, n in enumerate(names)}
        for r in seed.rows:
            keys.append([r[position[c.name]] for c in key])  # type: ignore[misc]
    return key, keys


def count_rows(
    conn: psycopg.Connection[tuple[Any, ...]],
    name: str,
    whole: bool,
    wanted: list[Column],
    key: list[Column],
    keys: list[list[str | None]] | None,
) -> list[int]:
    """[rows, rows that are not seed rows, then per wanted column its values that are
    neither NULL nor the column's default, in rows that are not seed rows].

    A value equal to the column's default carries no information (every row got
    it when the column was added), so dropping it loses nothing. One scan of the
    table answers everything. A table dropped or emptied as a whole is counted
    without its inheritance children (ONLY): those are listed on their own.
    Seed rows are matched one for one (a row number within equal keys), so a
    duplicate of a seed row is data.
    """
    # `name` is regclass output (quoted where needed); types and defaults come from
    # the catalog (format_type, pg_get_expr), not from a user.
    relation = sql.SQL(("ONLY " if whole else "") + name)
    extra, join, params = _seed_match(key, keys)
    not_seed: sql.Composable = sql.SQL("true" if keys is None else "s.n IS NULL")
    counters: list[sql.Composable] = [
        sql.SQL("count(*)"),
        sql.SQL("count(*) FILTER (WHERE {})").format(not_seed),
    ]
    for i, column in enumerate(wanted):
        alias = sql.Identifier(f"sqlrunner_c{i}")
        extra.append(sql.SQL("t.{} AS {}").format(sql.Identifier(column.name), alias))
        if column.default is None:
            condition = sql.SQL("r.{} IS NOT NULL").format(alias)
        else:  # compared as text, which every type has (json, for one, has no "=")
            condition = sql.SQL(
                "r.{0} IS NOT NULL AND r.{0}::text IS DISTINCT FROM ({1})::text"
            ).format(alias, sql.SQL(column.default))
        counters.append(sql.SQL("count(*) FILTER (WHERE {} AND {})").format(condition, not_seed))
    inner = sql.SQL("SELECT {} FROM {} AS t").format(
        sql.SQL(", ").join(extra) if extra else sql.SQL("1"), relation
    )
    query = sql.SQL("SELECT {} FROM ({}) AS r{}").format(sql.SQL(", ").join(counters), inner, join)
    row = conn.execute(query, params or None).fetchone()
    return [int(v) for v in row] if row else [0, 0, *([0] * len(wanted))]


def _seed_match(
    key: list[Column], keys: list[list[str | None]] | None
) -> tuple[list[sql.Composable], sql.Composable, list[Any]]:
    """(columns for the table's side, the join to the seed rows, its parameters) for
    count_rows: after the join, ``s.n IS NULL`` marks a row that is not a seed row."""
    if keys is None:
        return [], sql.SQL(""), []
    if not key:  # no column to compare on: no row is known to be a seed row
        return [], sql.SQL(" LEFT JOIN (SELECT NULL::bigint AS n WHERE false) AS s ON false"), []
    row_key = sql.SQL("ARRAY[{}]").format(
        sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c.name)) for c in key)
    )
    seed_key = sql.SQL("ARRAY[{}]").format(
        sql.SQL(", ").join(
            sql.SQL("((e->>{})::{})::text").format(sql.Literal(i), sql.SQL(c.type))
            for i, c in enumerate(key)
        )
    )
    extra: list[sql.Composable] = [
        sql.SQL("{} AS sqlrunner_key").format(row_key),
        sql.SQL("row_number() OVER (PARTITION BY {}) AS sqlrunner_n").format(row_key),
    ]
    join = sql.SQL(
        " LEFT JOIN (SELECT k, row_number() OVER (PARTITION BY k) AS n FROM "
        "(SELECT {} AS k FROM jsonb_array_elements(%s::jsonb) AS e) AS seed) AS s "
        "ON s.k = r.sqlrunner_key AND s.n = r.sqlrunner_n"
    ).format(seed_key)
    return extra, join, [json.dumps(keys)]
