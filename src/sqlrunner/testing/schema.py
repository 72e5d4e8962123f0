"""Helpers for testing migrations themselves: the round trip and the re-run of a crash.

Both compare catalog snapshots of every user schema, written the way a DBA
compares schemas: by name and definition, never by OID or attribute number
(a dropped column leaves a gap in attnum that a fresh build does not).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pglast
import psycopg
from psycopg.conninfo import make_conninfo

import sqlrunner

NO_TRANSACTION_MARK = "-- sqlrunner: no-transaction"  # the contract's first line
Snapshot = dict[str, list[str]]

# %(schema)s: the ledger schema; %(ledger)s: LIKE pattern of sqlrunner's own relations.
_USER_NS = """n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"""
_NOT_LEDGER = "NOT (n.nspname = %(schema)s AND c.relname LIKE %(ledger)s)"
SNAPSHOT_QUERIES: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname, n.nspacl::text FROM pg_namespace n
        WHERE {_USER_NS} AND n.nspname <> %(schema)s ORDER BY 1""",
    "extensions": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
    "relations": f"""
        SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.reloptions::text,
               c.relacl::text, obj_description(c.oid, 'pg_class'),
               CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NS} AND {_NOT_LEDGER} ORDER BY 1, 2""",
    "columns": f"""
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attcollation::regcollation::text, a.attacl::text,
               col_description(c.oid, a.attnum),
               rank() OVER (PARTITION BY c.oid ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE {_USER_NS} AND {_NOT_LEDGER} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 2, 12""",
    "constraints": f"""
        SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid),
               k.convalidated, k.condeferrable, k.condeferred
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NS} AND {_NOT_LEDGER} ORDER BY 1, 2, 3""",
    "indexes": f"""
        SELECT n.nspname, c.relname, pg_get_indexdef(x.indexrelid), x.indisvalid, x.indisready
        FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NS} AND {_NOT_LEDGER} ORDER BY 1, 2""",
    "triggers": f"""
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NS} AND NOT t.tgisinternal ORDER BY 1, 2, 3""",
    "policies": f"""
        SELECT n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive,
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NS} ORDER BY 1, 2, 3""",
    "functions": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
               CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END,
               p.proacl::text, obj_description(p.oid, 'pg_proc')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_USER_NS} ORDER BY 1, 2, 3""",
    "types": f"""
        SELECT n.nspname, t.typname, t.typtype, pg_catalog.format_type(t.typbasetype, t.typtypmod),
               (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                FROM pg_enum e WHERE e.enumtypid = t.oid),
               (SELECT string_agg(pg_get_constraintdef(k.oid), ',' ORDER BY k.conname)
                FROM pg_constraint k WHERE k.contypid = t.oid)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {_USER_NS} AND (t.typtype IN ('e', 'd', 'r', 'm') OR t.typtype = 'c'
              AND EXISTS (SELECT FROM pg_class r WHERE r.oid = t.typrelid AND r.relkind = 'c'))
        ORDER BY 1, 2""",
}


def snapshot(
    dsn: str, ledger_schema: str = "public", ledger_table: str = "sqlrunner_ledger"
) -> Snapshot:
    """The schema of every user schema, one text line per object, sqlrunner's ledger left out."""
    params = {"schema": ledger_schema, "ledger": ledger_table.replace("_", "\\_") + "%"}
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            name: [" | ".join(map(str, row)) for row in conn.execute(query, params).fetchall()]
            for name, query in SNAPSHOT_QUERIES.items()
        }


def difference(before: Snapshot, after: Snapshot) -> str:
    """A unified diff of two snapshots ('' when equal), by kind of object."""
    lines: list[str] = []
    for kind in SNAPSHOT_QUERIES:
        lines += difflib.unified_diff(
            before.get(kind, []),
            after.get(kind, []),
            f"{kind} (expected)",
            f"{kind} (found)",
            lineterm="",
            n=0,
        )
    return "\n".join(lines)


def _assert_same(expected: Snapshot, found: Snapshot, what: str) -> None:
    diff = difference(expected, found)
    if diff:
        raise AssertionError(f"{what}:\n{diff}")


@dataclass(frozen=True, slots=True)
class Forward:
    """One forward file as the file rules name it: NNNN_name.sql, maybe no-transaction."""

    version: int
    path: Path
    reversible: bool
    no_transaction: bool


def forward_files(sql_dir: str | os.PathLike[str]) -> list[Forward]:
    """The forward files of ``sql_dir`` in version order (the files layout is the contract)."""
    root = Path(sql_dir)
    found = []
    for path in sorted((root / "forward").glob("*.sql")):
        head = path.read_text(encoding="utf-8").split("\n", 1)[0].strip()
        found.append(
            Forward(
                int(path.name.split("_", 1)[0]),
                path,
                (root / "rollback" / path.name).is_file(),
                head == NO_TRANSACTION_MARK,
            )
        )
    return sorted(found, key=lambda f: f.version)


def assert_round_trip(
    dsn: str, sql_dir: str | os.PathLike[str], *, ledger_schema: str = "public"
) -> None:
    """Apply, roll back everything reversible, re-apply; fail with the schema difference.

    ``dsn`` is an empty database (``sqlrunner_empty_dsn``): the files up to the newest
    irreversible one are applied first, and that schema is what a full rollback must
    return to; the re-apply must then rebuild exactly the schema of the first apply.
    """
    files = forward_files(sql_dir)
    floor = max((f.version for f in files if not f.reversible), default=None)
    reversible = [f for f in files if floor is None or f.version > floor]
    options: dict[str, Any] = {"ledger_schema": ledger_schema}
    if floor is not None:
        sqlrunner.apply(dsn, sql_dir, to=floor, seed=False, verify=False, **options)
    applied = [f for f in sqlrunner.status(dsn, sql_dir, **options).files if f.state == "applied"]
    newer = [
        f.label for f in applied if f.kind == "forward" and (floor is None or f.version > floor)
    ]
    if newer:
        raise AssertionError(
            f"assert_round_trip needs a database at or below the irreversible files; "
            f"{newer[0]} is applied"
        )
    before = snapshot(dsn, ledger_schema)
    sqlrunner.apply(dsn, sql_dir, **options)
    first = snapshot(dsn, ledger_schema)
    if reversible:
        sqlrunner.rollback(dsn, sql_dir, steps=len(reversible), allow_data_loss=True, **options)
    _assert_same(before, snapshot(dsn, ledger_schema), "rollback did not restore the schema")
    sqlrunner.apply(dsn, sql_dir, **options)
    _assert_same(first, snapshot(dsn, ledger_schema), "re-apply after rollback differs")


def run_by_hand(dsn: str, path: Path) -> None:
    """Run a no-transaction file as ``psql -f`` would: each statement alone, in autocommit."""
    text = path.read_text(encoding="utf-8")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in pglast.split(text):
            try:
                conn.execute(statement, prepare=False)
            except psycopg.Error as exc:
                raise AssertionError(
                    f"{path}: {exc.__class__.__name__}: {exc} | {statement}"
                ) from exc


def assert_rerun_safe(
    dsn: str, sql_dir: str | os.PathLike[str], *, ledger_schema: str = "public"
) -> None:
    """Every no-transaction file, run twice by hand, leaves the schema its first run left.

    Such a file must survive a crash at any statement: the rerun after a crash runs every
    statement again on top of its own effects, which is what the second run does.
    ``dsn`` is an empty database; the files before each one are applied by sqlrunner.
    """
    options: dict[str, Any] = {"ledger_schema": ledger_schema}
    previous: int | None = None
    for file in forward_files(sql_dir):
        if file.no_transaction:
            if previous is not None:
                sqlrunner.apply(dsn, sql_dir, to=previous, seed=False, verify=False, **options)
            run_by_hand(dsn, file.path)
            once = snapshot(dsn, ledger_schema)
            run_by_hand(dsn, file.path)
            _assert_same(once, snapshot(dsn, ledger_schema), f"{file.path.name} run twice differs")
        previous = file.version


@dataclass(frozen=True, slots=True)
class Loader:
    """A pytest-postgresql ``load=[...]`` entry: ``sqlrunner.apply`` of ``sql_dir`` on the
    template database that pytest-postgresql builds once and clones for every test."""

    sql_dir: Path
    ledger_schema: str = "public"

    def __call__(
        self,
        *,
        host: str,
        port: str | int,
        user: str,
        dbname: str,
        password: str | None = None,
        **_ignored: object,
    ) -> None:
        params = {"host": host, "port": str(port), "user": user, "dbname": dbname}
        if password:
            params["password"] = password
        sqlrunner.apply(make_conninfo(**params), self.sql_dir, ledger_schema=self.ledger_schema)


def loader(sql_dir: str | os.PathLike[str] = "sql", *, ledger_schema: str = "public") -> Loader:
    """``postgresql_proc(load=[sqlrunner.testing.loader("sql")])``: migrate pytest-postgresql's
    template with sqlrunner."""
    return Loader(Path(sql_dir).resolve(), ledger_schema)


__all__ = ["assert_rerun_safe", "assert_round_trip", "loader", "snapshot"]
