"""The rollback data-loss check: which rows and values a rollback would destroy.

It runs before the runner takes any lock, with plain SELECTs only (catalog
reads and counts take ACCESS SHARE, which blocks no writer). What a statement
names is only the start: ``CASCADE`` (and the automatic dependencies PostgreSQL
follows even without it: partitions, extension members) reaches further, so the
objects a ``DROP`` takes with it are computed from ``pg_depend`` the way
PostgreSQL's own ``findDependentObjects`` walks it. ``TRUNCATE`` empties tables
(and, with CASCADE, every table whose foreign keys point at them). A ``DO``
block or ``CALL`` runs SQL that cannot be read in advance: it is reported as
unchecked, which asks for the same confirmation.
Rows that equal a seed file's rows are seed data, not data at risk (seeddata.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from .files import Migration
from .seeddata import SeedRows, columns_of, count_rows, quoted, quoted_name, seed_keys, seed_rows
from .sqltext import Script, Statement

# removeType of a DropStmt -> how its objects are named and found in the catalog
_BY_REGCLASS = frozenset(
    {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SEQUENCE", "OBJECT_FOREIGN_TABLE"}
)
_BY_REGTYPE = frozenset({"OBJECT_TYPE", "OBJECT_DOMAIN"})

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

# Statements whose effect cannot be read from their text: confirmed like a data loss.
UNCHECKED = {
    "DoStmt": "a DO block runs SQL that cannot be checked for data loss",
    "CallStmt": "CALL runs a procedure that cannot be checked for data loss",
    "DropOwnedStmt": "DROP OWNED drops whatever a role owns: not checked for data loss",
}


@dataclass(frozen=True, slots=True)
class Origin:
    """A rollback statement that drops or empties something, and where it is."""

    where: str  # rollback/0003_app.sql:4
    text: str  # DROP SCHEMA app CASCADE
    named: bool = False  # the statement names the table or column itself: no "why" needed

    def why(self, verb: str) -> str:
        return f"{verb} by {self.text} at {self.where}"


@dataclass(frozen=True, slots=True)
class Drop:
    """One object a statement names: its catalog lookup, and whether CASCADE applies."""

    lookup: str  # regclass | regtype | regnamespace | extension | column
    name: str  # quoted, as to_regclass() and friends read it
    column: str | None
    cascade: bool
    origin: int


@dataclass(frozen=True, slots=True)
class Truncate:
    name: str
    inh: bool
    cascade: bool
    origin: int


@dataclass
class _Plan:
    """What the rollback files do, as read from their parse trees (no database)."""

    origins: list[Origin] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    truncates: list[Truncate] = field(default_factory=list)
    attributes: list[Drop] = field(default_factory=list)  # ALTER TYPE ... DROP ATTRIBUTE
    unchecked: list[str] = field(default_factory=list)


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
    from .derived import derived_columns, overwritten

    derived = derived_columns(conn, forward)
    updates = list(overwritten(conn, rollback_scripts, derived))
    plan = _read(rollback_scripts)
    at_risk = _reached(conn, plan)
    for oid, columns in derived.items():  # a dropped derived column loses nothing
        entry = at_risk.get(oid)
        if entry is not None and entry.whole is None:
            entry.columns = {c: o for c, o in entry.columns.items() if c not in columns}
            if not entry.columns:
                del at_risk[oid]
    for oid, origin in _emptied(conn, plan):
        entry = at_risk.setdefault(oid, _AtRisk(oid))
        if entry.whole is None:
            entry.whole = (origin, "emptied")
    attribute_losses = list(_attributes(conn, plan, at_risk))
    if not at_risk:
        return [*attribute_losses, *updates, *plan.unchecked]
    seeds = seed_rows(conn, seed_scripts)
    losses: list[str] = []
    for entry in at_risk.values():
        losses.extend(_losses(conn, entry, seeds))
    return [*losses, *attribute_losses, *updates, *plan.unchecked]


# --- reading the statements ----------------------------------------------------------------


def _read(scripts: Sequence[Script]) -> _Plan:
    plan = _Plan()
    for script in scripts:
        for statement in script.statements:
            where = f"{script.migration.display_path}:{statement.line}"
            _read_statement(plan, statement, where)
    return plan


def _read_statement(plan: _Plan, statement: Statement, where: str) -> None:
    fields = statement.fields
    kind = statement.kind
    unchecked = UNCHECKED.get(kind)
    if unchecked is not None:
        plan.unchecked.append(f"{where}: {unchecked}")
        return
    origin = len(plan.origins)
    cascade = fields.get("behavior") == "DROP_CASCADE"
    summary = " ".join(statement.text.split())[:80]
    if kind == "DropStmt":
        remove = fields.get("removeType")
        for obj in fields.get("objects", ()):
            lookup_name = _drop_target(str(remove), obj)
            if lookup_name is not None:
                plan.drops.append(Drop(*lookup_name, None, cascade, origin))
        plan.origins.append(Origin(where, summary))
    elif kind == "TruncateStmt":
        for relation in fields.get("relations", ()):
            rangevar = relation["RangeVar"]
            plan.truncates.append(
                Truncate(quoted_name(rangevar), bool(rangevar.get("inh")), cascade, origin)
            )
        plan.origins.append(Origin(where, summary))
    elif kind == "AlterTableStmt" and fields.get("objtype") in ("OBJECT_TABLE", "OBJECT_TYPE"):
        table = quoted_name(fields["relation"])
        dropped = plan.drops if fields["objtype"] == "OBJECT_TABLE" else plan.attributes
        for command in fields.get("cmds", ()):
            cmd = command.get("AlterTableCmd", {})
            if cmd.get("subtype") == "AT_DropColumn":
                column_cascade = cmd.get("behavior") == "DROP_CASCADE"
                dropped.append(Drop("column", table, str(cmd["name"]), column_cascade, origin))
        plan.origins.append(Origin(where, summary))


def _strings(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(item["String"]["sval"]) for item in items]


def _drop_target(remove: str, obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(catalog lookup, quoted name) of one object of a DROP, or None when it holds no data."""
    if remove in _BY_REGCLASS:
        return "regclass", quoted(_strings(obj["List"]["items"]))
    if remove in _BY_REGTYPE:
        return "regtype", quoted(_strings(obj["TypeName"]["names"]))
    if remove == "OBJECT_SCHEMA":
        return "regnamespace", quoted([obj["String"]["sval"]])
    if remove == "OBJECT_EXTENSION":
        return "extension", str(obj["String"]["sval"])
    return None


# --- what the database says they reach ------------------------------------------------------


def _reached(conn: psycopg.Connection[tuple[Any, ...]], plan: _Plan) -> dict[int, _AtRisk]:
    """Tables and columns the DROP statements take with them, in statement order."""
    if not plan.drops:
        return {}
    starts = [_resolve(conn, drop) for drop in plan.drops]
    rows = conn.execute(
        REACH_QUERY,
        (
            [s[0] for s in starts],
            [s[1] for s in starts],
            [s[2] for s in starts],
            [d.origin for d in plan.drops],
            [d.cascade for d in plan.drops],
        ),
    ).fetchall()
    at_risk: dict[int, _AtRisk] = {}
    partitioned: set[int] = set()  # no rows of its own: its partitions are listed, and counted
    for oid, relkind, subid, attname, origin, direct in rows:
        if subid == 0 and relkind != "r":
            partitioned.add(int(oid))
            continue
        why = replace(plan.origins[origin], named=bool(direct))
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
    conn: psycopg.Connection[tuple[Any, ...]], plan: _Plan, at_risk: dict[int, _AtRisk]
) -> Iterator[str]:
    """ALTER TYPE ... DROP ATTRIBUTE: the attribute's values vanish from every column of
    that composite type (no CASCADE needed), and with CASCADE the typed tables (CREATE
    TABLE ... OF type) lose that column, added to ``at_risk``."""
    for drop in plan.attributes:
        origin = plan.origins[drop.origin]
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


def _emptied(conn: psycopg.Connection[tuple[Any, ...]], plan: _Plan) -> list[tuple[int, Origin]]:
    """(table oid, origin) of every table a TRUNCATE empties."""
    if not plan.truncates:
        return []
    oids = [
        conn.execute("SELECT to_regclass(%s)::oid", (t.name,)).fetchone() for t in plan.truncates
    ]
    rows = conn.execute(
        EMPTIED_QUERY,
        (
            [row[0] if row else None for row in oids],
            [t.origin for t in plan.truncates],
            [t.inh for t in plan.truncates],
            [t.cascade for t in plan.truncates],
        ),
    ).fetchall()
    return [(int(oid), plan.origins[origin]) for oid, origin in rows]


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
