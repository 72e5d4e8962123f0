"""Checks on a connection they are given: the sql/verify files, and the rollback
data-loss check.

Verify files return ``(check, ok, detail)`` rows. Verify is read-only and
bounded, whatever the file says:

- each file runs inside a READ ONLY transaction that is always rolled back,
  and that transaction takes its snapshot before the file's first statement,
  after which PostgreSQL refuses to make it read-write ("transaction
  read-write mode must be set before any query"), however the file tries
  (``SET TRANSACTION READ WRITE``, ``set_config('transaction_read_only', ...)``);
- statements that would change the transaction's mode or the runner's
  timeouts, and explicit ``LOCK``, are refused before anything runs;
- every statement runs under the runner's lock_timeout (a check queued behind
  a pending ALTER must not make the application queue behind the check) and a
  statement_timeout, set again before each statement;
- session advisory locks a check takes are released after its file.

An error becomes a failed check that names the file and line instead of
aborting the other checks.

The data-loss check (``data_at_risk``) says which rows and values a rollback
would destroy. It runs before the runner takes any lock, with plain SELECTs only
(catalog reads and counts take ACCESS SHARE, which blocks no writer). What a
statement names is only the start: ``CASCADE`` (and the automatic dependencies
PostgreSQL follows even without it: partitions, extension members) reaches
further, so the objects a ``DROP`` takes with it are computed from ``pg_depend``
the way PostgreSQL's own ``findDependentObjects`` walks it. ``TRUNCATE`` empties
tables (and, with CASCADE, every table whose foreign keys point at them). A ``DO``
block or ``CALL`` runs SQL that cannot be read in advance: it is reported as
unchecked, which asks for the same confirmation.

Rows count as seed data, not data at risk, only when they equal a seed file's
rows, compared column by column (as text after a cast to the column's type), with
duplicates matched one for one: three customer rows are not seed data because a
seed happens to insert three rows. Only constants can be compared (``now()``,
``DEFAULT`` or a subquery cannot), and ``INSERT ... SELECT`` writes rows that
cannot be known in advance, so its table's rows count as data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from .errors import InvalidMigrationSet
from .files import Migration, line_and_column
from .report import CheckResult, VerifyReport
from .session import SessionState, identifier, literal
from .sqltext import Script, Statement

VERIFY_LOCK_TIMEOUT = "200ms"
# Verify queries are meant to be cheap catalog and count checks.
VERIFY_STATEMENT_TIMEOUT = "1min"

# Settings a verify file may not SET or RESET: the transaction's mode and our bounds.
REFUSED_SETTINGS = frozenset(
    {
        "transaction",
        "session characteristics",
        "transaction_read_only",
        "default_transaction_read_only",
        "transaction_isolation",
        "transaction_deferrable",
        "lock_timeout",
        "statement_timeout",
    }
)


def refuse_unsafe_checks(scripts: Sequence[Script]) -> None:
    """Raise InvalidMigrationSet for a verify statement that could write or queue unbounded."""
    for script in scripts:
        for statement in script.statements:
            why = _unsafe(statement)
            if why:
                m = script.migration
                raise InvalidMigrationSet(
                    f"{m.display_path}:{statement.line}:{statement.column}: {why} in a verify "
                    f"file (verify is read-only and bounded): {statement.first_line}"
                )


def _unsafe(statement: Statement) -> str | None:
    if statement.kind == "LockStmt":
        return "LOCK is not allowed"
    if statement.kind != "VariableSetStmt":
        return None
    if statement.fields.get("kind") == "VAR_RESET_ALL":
        return "RESET ALL is not allowed"
    name = str(statement.fields.get("name", "")).lower()
    return f"SET {name} is not allowed" if name in REFUSED_SETTINGS else None


def run_checks(
    conn: psycopg.Connection[tuple[Any, ...]],
    scripts: Sequence[Script],
    target: str,
    *,
    lock_timeout: str = VERIFY_LOCK_TIMEOUT,
    statement_timeout: str = VERIFY_STATEMENT_TIMEOUT,
    state: SessionState | None = None,
) -> VerifyReport:
    """Every check of every verify file, in file order."""
    refuse_unsafe_checks(scripts)
    started = time.monotonic()
    if state is None and scripts:
        state = SessionState.capture(conn)
    bounds = (
        f"SET LOCAL lock_timeout = {literal(lock_timeout)}; "
        f"SET LOCAL statement_timeout = {literal(statement_timeout)};\n"
    )
    checks: list[CheckResult] = []
    for script in scripts:
        checks.extend(_run_file(conn, script, bounds, state))
    return VerifyReport(target, tuple(checks), int((time.monotonic() - started) * 1000))


def _run_file(
    conn: psycopg.Connection[tuple[Any, ...]],
    script: Script,
    bounds: str,
    state: SessionState | None,
) -> list[CheckResult]:
    m = script.migration
    results: list[CheckResult] = []
    # SELECT 1 takes the transaction's snapshot: from then on it cannot become read-write.
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY; " + bounds + "SELECT 1")
            for statement in script.statements:
                try:
                    cursor = conn.execute(bounds + statement.text)
                    while cursor.nextset():
                        pass  # the statement's own result is the last one
                except psycopg.Error as exc:
                    position = int(exc.diag.statement_position or 0) - len(bounds)
                    offset = statement.offset + max(0, position - 1)
                    line, _ = line_and_column(m.text, offset)
                    results.append(
                        CheckResult(
                            m.display_path,
                            f"{m.label} line {line}",
                            False,
                            f"error {exc.diag.sqlstate}: {exc.diag.message_primary}",
                        )
                    )
                    break  # the transaction is aborted; later statements cannot run
                results.extend(_rows_of(m, statement.line, cursor))
    finally:  # a check's session advisory locks, even when interrupted
        release = state.release_locks() if state is not None else []
        if release:
            conn.execute("; ".join(release))
    return results


def _rows_of(m: Migration, line: int, cursor: psycopg.Cursor[tuple[Any, ...]]) -> list[CheckResult]:
    if cursor.description is None:
        return []
    if len(cursor.description) != 3:
        return [
            CheckResult(
                m.display_path,
                f"{m.label} line {line}",
                False,
                "a verify query must return (check text, ok boolean, detail text)",
            )
        ]
    return [
        CheckResult(m.display_path, str(check), ok is True, "" if detail is None else str(detail))
        for check, ok, detail in cursor.fetchall()
    ]


# --- the rollback data-loss check ---------------------------------------------------------

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
        return "regclass", identifier(*_strings(obj["List"]["items"]))
    if remove in _BY_REGTYPE:
        return "regtype", identifier(*_strings(obj["TypeName"]["names"]))
    if remove == "OBJECT_SCHEMA":
        return "regnamespace", identifier(obj["String"]["sval"])
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


# --- seed data: the rows seed files write, and a table's rows counted apart from them ------

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
