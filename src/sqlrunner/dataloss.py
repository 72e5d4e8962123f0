"""The rollback data-loss check: which rows and values a rollback would destroy.

It runs before the runner takes any lock, with plain SELECTs only (catalog reads
and counts take ACCESS SHARE, which blocks no writer). What a statement names is
only the start: ``CASCADE`` (and the automatic dependencies PostgreSQL follows
even without it: partitions, extension members) reaches further, so the objects a
``DROP`` takes with it are computed from ``pg_depend`` the way PostgreSQL's own
``findDependentObjects`` walks it. ``TRUNCATE`` empties tables (and, with CASCADE,
every table whose foreign keys point at them). A ``DO`` block or ``CALL`` runs SQL
that cannot be read in advance: it is reported as unchecked, which asks for the
same confirmation.

Rows equal to a seed file's rows are seed data, not data at risk (seedrows.py);
columns a batched file declares derived hold no data of their own (derived.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from .derived import derived_columns, overwritten
from .files import Migration
from .rollbackeffects import Drop, Origin, RollbackEffects, read_effects
from .seedrows import SeedRows, columns_of, count_rows, seed_keys, seed_rows
from .sqltext import Script

# Dependency types PostgreSQL follows on DROP even without CASCADE: auto, internal,
# extension member, auto-extension, partition. A normal ('n') dependent makes a
# RESTRICT drop fail (nothing is lost), and is dropped with CASCADE.
REACH_QUERY = """
WITH RECURSIVE start(classid, objid, objsubid, origin, cascade) AS (
    SELECT * FROM unnest(%s::oid[], %s::oid[], %s::int[], %s::int[], %s::bool[])
), dropped(classid, objid, objsubid, origin, cascade, direct) AS (
    SELECT classid, objid, objsubid, origin, cascade, true FROM start WHERE objid IS NOT NULL
  UNION
    SELECT next.classid, next.objid, next.objsubid, d.origin, d.cascade, false
    FROM dropped d
    CROSS JOIN LATERAL (
        SELECT dep.classid, dep.objid, dep.objsubid FROM pg_depend dep
        WHERE dep.refclassid = d.classid AND dep.refobjid = d.objid
          AND (d.objsubid = 0 OR dep.refobjsubid = d.objsubid)
          AND (dep.deptype IN ('a', 'i', 'e', 'x', 'P', 'S') OR (dep.deptype = 'n' AND d.cascade))
      UNION ALL
        -- a part of an object (a view's rule, a type's array) takes the whole object with it
        SELECT dep.refclassid, dep.refobjid, 0 FROM pg_depend dep
        WHERE dep.classid = d.classid AND dep.objid = d.objid AND dep.deptype = 'i'
    ) AS next
)
SELECT c.oid, c.relkind, d.objsubid, a.attname, min(d.origin), bool_or(d.direct)
FROM dropped d
JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
WHERE c.relkind IN ('r', 'p') AND (d.objsubid = 0 OR a.attname IS NOT NULL)
GROUP BY 1, 2, 3, 4
ORDER BY 5, 6 DESC, 3, 1
"""

# TRUNCATE empties the named tables, their inheritance children and partitions (unless
# ONLY), and with CASCADE every table whose foreign keys reference an emptied one.
EMPTIED_QUERY = """
WITH RECURSIVE emptied(oid, origin, inh, cascade, direct) AS (
    SELECT *, true FROM unnest(%s::oid[], %s::int[], %s::bool[], %s::bool[])
        AS u(oid, origin, inh, cascade)
    WHERE u.oid IS NOT NULL
  UNION
    SELECT next.oid, e.origin, true, e.cascade, false
    FROM emptied e
    CROSS JOIN LATERAL (
        SELECT inhrelid AS oid FROM pg_inherits WHERE inhparent = e.oid AND e.inh
      UNION ALL
        SELECT conrelid FROM pg_constraint WHERE contype = 'f' AND confrelid = e.oid AND e.cascade
    ) AS next
)
SELECT e.oid, min(e.origin) FROM emptied e JOIN pg_class c ON c.oid = e.oid
WHERE c.relkind = 'r' GROUP BY 1 ORDER BY 2, bool_or(e.direct) DESC, 1
"""


@dataclass
class _AtRisk:
    """One table about to lose data: dropped or emptied as a whole, or some of its columns."""

    oid: int
    whole: tuple[Origin, str] | None = None  # (why, "dropped" | "emptied")
    columns: dict[str, Origin] = field(default_factory=dict)


def data_at_risk(
    conn: psycopg.Connection[tuple[Any, ...]],
    rollback_scripts: Sequence[Script],
    seed_scripts: Sequence[Script],
    forward: Sequence[Migration] = (),
) -> list[str]:
    """One line per table, column or statement that would take data with it.

    For example ``table notes: 2 rows``, ``column items.colour: 1 values besides NULL
    and its default``, or ``rollback/0004_x.sql:2: a DO block ... cannot be checked``.
    Columns that batched ``forward`` files declare derived hold no data of their own
    (derived.py); rollback UPDATEs that overwrite any other column are data at risk.
    """
    derived = derived_columns(conn, forward)
    updates = list(overwritten(conn, rollback_scripts, derived))
    effects = read_effects(rollback_scripts)
    at_risk = _reached(conn, effects)
    for oid, columns in derived.items():  # a dropped derived column loses nothing
        entry = at_risk.get(oid)
        if entry is not None and entry.whole is None:
            entry.columns = {c: o for c, o in entry.columns.items() if c not in columns}
            if not entry.columns:
                del at_risk[oid]
    for oid, origin in _emptied(conn, effects):
        entry = at_risk.setdefault(oid, _AtRisk(oid))
        if entry.whole is None:
            entry.whole = (origin, "emptied")
    attribute_losses = list(_attributes(conn, effects, at_risk))
    if not at_risk:
        return [*attribute_losses, *updates, *effects.unchecked]
    seeds = seed_rows(conn, seed_scripts)
    losses: list[str] = []
    for entry in at_risk.values():
        losses.extend(_losses(conn, entry, seeds))
    return [*losses, *attribute_losses, *updates, *effects.unchecked]


# --- what the database says they reach ------------------------------------------------------


def _reached(
    conn: psycopg.Connection[tuple[Any, ...]], effects: RollbackEffects
) -> dict[int, _AtRisk]:
    """Tables and columns the DROP statements take with them, in statement order."""
    if not effects.drops:
        return {}
    starts = [_resolve(conn, drop) for drop in effects.drops]
    rows = conn.execute(
        REACH_QUERY,
        (
            [s[0] for s in starts],
            [s[1] for s in starts],
            [s[2] for s in starts],
            [d.origin for d in effects.drops],
            [d.cascade for d in effects.drops],
        ),
    ).fetchall()
    at_risk: dict[int, _AtRisk] = {}
    partitioned: set[int] = set()  # no rows of its own: its partitions are listed, and counted
    for oid, relkind, subid, attname, origin, direct in rows:
        if subid == 0 and relkind != "r":
            partitioned.add(int(oid))
            continue
        why = replace(effects.origins[origin], named=bool(direct))
        entry = at_risk.setdefault(int(oid), _AtRisk(int(oid)))
        if subid == 0 and entry.whole is None:
            entry.whole = (why, "dropped")
        elif subid != 0:
            entry.columns.setdefault(str(attname), why)
    return {oid: entry for oid, entry in at_risk.items() if oid not in partitioned}


def _resolve(conn: psycopg.Connection[tuple[Any, ...]], drop: Drop) -> tuple[Any, Any, int]:
    """(classid, objid, objsubid) of a named object; objid None when it does not exist."""
    if drop.lookup == "column":
        row = conn.execute(
            "SELECT 'pg_class'::regclass::oid, attrelid, attnum FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
            (drop.name, drop.column),
        ).fetchone()
        return (row[0], row[1], int(row[2])) if row else (None, None, 0)
    catalog, expression = {
        "regclass": ("pg_class", "to_regclass(%s)::oid"),
        "regtype": ("pg_type", "to_regtype(%s)::oid"),
        "regnamespace": ("pg_namespace", "to_regnamespace(%s)::oid"),
        "extension": ("pg_extension", "(SELECT oid FROM pg_extension WHERE extname = %s)"),
    }[drop.lookup]
    row = conn.execute(
        f"SELECT '{catalog}'::regclass::oid, {expression}",  # constants of this module
        (drop.name,),
    ).fetchone()
    return (row[0], row[1], 0) if row else (None, None, 0)


def _attributes(
    conn: psycopg.Connection[tuple[Any, ...]], effects: RollbackEffects, at_risk: dict[int, _AtRisk]
) -> Iterator[str]:
    """ALTER TYPE ... DROP ATTRIBUTE: the attribute's values vanish from every column of
    that composite type (no CASCADE needed), and with CASCADE the typed tables (CREATE
    TABLE ... OF type) lose that column, added to ``at_risk``."""
    for drop in effects.attributes:
        origin = effects.origins[drop.origin]
        row = conn.execute(
            "SELECT oid FROM pg_type WHERE oid = to_regtype(%s) AND typtype = 'c'", (drop.name,)
        ).fetchone()
        if row is None:
            continue
        if drop.cascade:
            for oid, attname in conn.execute(
                "SELECT c.oid, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
                "WHERE c.reloftype = %s AND a.attname = %s AND NOT a.attisdropped",
                (row[0], drop.column),
            ).fetchall():
                at_risk.setdefault(int(oid), _AtRisk(int(oid))).columns.setdefault(
                    str(attname), origin
                )
        users = conn.execute(
            "SELECT a.attrelid::regclass::text, a.attname FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE a.atttypid = %s AND c.relkind IN ('r', 'p') AND NOT a.attisdropped "
            "ORDER BY a.attrelid, a.attnum",
            (row[0],),
        ).fetchall()
        for table, column in users:
            query = sql.SQL("SELECT count(*) FROM {} WHERE ({}).{} IS NOT NULL").format(
                sql.SQL(str(table)), sql.Identifier(column), sql.Identifier(str(drop.column))
            )
            counted = conn.execute(query).fetchone()
            if counted and counted[0]:
                yield (
                    f"column {table}.{column}: {counted[0]} values of its attribute "
                    f"{drop.column} ({origin.why('dropped')})"
                )


def _emptied(
    conn: psycopg.Connection[tuple[Any, ...]], effects: RollbackEffects
) -> list[tuple[int, Origin]]:
    """(table oid, origin) of every table a TRUNCATE empties."""
    if not effects.truncates:
        return []
    oids = [
        conn.execute("SELECT to_regclass(%s)::oid", (t.name,)).fetchone() for t in effects.truncates
    ]
    rows = conn.execute(
        EMPTIED_QUERY,
        (
            [row[0] if row else None for row in oids],
            [t.origin for t in effects.truncates],
            [t.inh for t in effects.truncates],
            [t.cascade for t in effects.truncates],
        ),
    ).fetchall()
    return [(int(oid), effects.origins[origin]) for oid, origin in rows]


# --- what is lost ----------------------------------------------------------------------------


def _losses(
    conn: psycopg.Connection[tuple[Any, ...]], entry: _AtRisk, seeds: list[tuple[int, SeedRows]]
) -> Iterator[str]:
    row = conn.execute("SELECT %s::oid::regclass::text", (entry.oid,)).fetchone()
    name = str(row[0]) if row else str(entry.oid)
    table_columns = columns_of(conn, entry.oid)
    by_name = {c.name: c for c in table_columns}
    wanted = [] if entry.whole else [by_name[c] for c in entry.columns if c in by_name]
    key, keys = seed_keys(entry.oid, table_columns, seeds)
    try:
        total, not_seed, *values = count_rows(
            conn, name, entry.whole is not None, wanted, key, keys
        )
    except psycopg.Error as exc:
        yield f"table {name}: its rows could not be counted ({exc.diag.message_primary})"
        return
    if entry.whole is not None:
        origin, verb = entry.whole
        notes = [f"{total - not_seed} of them seed rows"] if total != not_seed else []
        if not origin.named:
            notes.append(origin.why(verb))
        if not_seed:
            yield f"table {name}: {total} rows" + (f" ({'; '.join(notes)})" if notes else "")
        return
    for column, count in zip(wanted, values, strict=True):
        origin = entry.columns[column.name]
        why = "" if origin.named else f" ({origin.why('dropped')})"
        if count:
            yield f"column {name}.{column.name}: {count} values besides NULL and its default{why}"
