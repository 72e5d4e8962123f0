"""``baseline V``: a database built by hand (psql) up to V gets a ledger saying so.

Before marking anything it checks that the objects the files up to V create
(tables, views, sequences, indexes, types, schemas, functions, extensions, added
columns) exist, so a baseline cannot hide a file nobody ran.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from .adopt import AdoptReport, Mark, record_marks
from .api import parse_all
from .errors import UsageError
from .files import load_migration_set, resolve_sql_dir
from .session import Options, Target
from .session import identifier as ident

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .session import OptionValues


@dataclass(frozen=True, slots=True)
class DbObject:
    """Something a forward file creates: ``kind`` is relation/column/type/schema/function/
    extension; ``name`` the qualified name as PostgreSQL would resolve it."""

    kind: str
    schema: str | None
    name: str
    column: str | None = None

    @property
    def qualified(self) -> str:
        return f"{ident(self.schema)}.{ident(self.name)}" if self.schema else ident(self.name)

    def __str__(self) -> str:
        column = f" column {self.column}" if self.column else ""
        shown = f"{self.schema}.{self.name}" if self.schema else self.name
        return f"{self.kind} {shown}{column}"


def _range(fields: Mapping[str, Any]) -> tuple[str | None, str]:
    return fields.get("schemaname") or None, str(fields["relname"])


def _names(items: list[dict[str, Any]]) -> tuple[str | None, str]:
    parts = [str(i["String"]["sval"]) for i in items if "String" in i]
    return (parts[-2] if len(parts) > 1 else None), parts[-1]


def created_objects(kind: str, fields: Mapping[str, Any]) -> list[DbObject]:
    """The objects one parsed statement creates (empty for anything else)."""
    if kind in ("CreateStmt", "CreateSeqStmt"):
        key = "relation" if kind == "CreateStmt" else "sequence"
        return [DbObject("relation", *_range(fields[key]))]
    if kind == "ViewStmt":
        return [DbObject("relation", *_range(fields["view"]))]
    if kind == "CreateTableAsStmt":
        return [DbObject("relation", *_range(fields["into"]["IntoClause"]["rel"]))]
    if kind == "IndexStmt" and fields.get("idxname"):
        return [DbObject("relation", _range(fields["relation"])[0], str(fields["idxname"]))]
    if kind in ("CreateEnumStmt", "CreateDomainStmt", "CompositeTypeStmt"):
        if kind == "CompositeTypeStmt":
            return [DbObject("type", *_range(fields["typevar"]))]
        key = "typeName" if kind == "CreateEnumStmt" else "domainname"
        return [DbObject("type", *_names(fields[key]))]
    if kind == "CreateSchemaStmt" and fields.get("schemaname"):
        return [DbObject("schema", None, str(fields["schemaname"]))]
    if kind == "CreateFunctionStmt":
        return [DbObject("function", *_names(fields["funcname"]))]
    if kind == "CreateExtensionStmt":
        return [DbObject("extension", None, str(fields["extname"]))]
    if kind == "AlterTableStmt":
        schema, table = _range(fields["relation"])
        return [
            DbObject("column", schema, table, str(c["def"]["ColumnDef"]["colname"]))
            for c in (c.get("AlterTableCmd", {}) for c in fields.get("cmds", ()))
            if c.get("subtype") == "AT_AddColumn"
        ]
    return []


def dropped_names(kind: str, fields: Mapping[str, Any]) -> set[str]:
    """Unqualified names a DROP or RENAME takes away (a later file undoing an earlier one)."""
    if kind == "DropStmt":
        names = set()
        for obj in fields.get("objects", ()):
            if "List" in obj:
                names.add(_names(obj["List"]["items"])[1])
            elif "String" in obj:
                names.add(str(obj["String"]["sval"]))
            elif "TypeName" in obj:
                names.add(_names(obj["TypeName"]["names"])[1])
        return names
    if kind == "RenameStmt" and fields.get("relation") and not fields.get("subname"):
        return {_range(fields["relation"])[1]}
    if kind == "AlterTableStmt":
        return {
            str(c["name"])
            for c in (c.get("AlterTableCmd", {}) for c in fields.get("cmds", ()))
            if c.get("subtype") == "AT_DropColumn"
        }
    return set()


def _exists_sql(obj: DbObject) -> tuple[str, tuple[Any, ...]]:
    if obj.kind == "relation":
        return "to_regclass(%s) IS NOT NULL", (obj.qualified,)
    if obj.kind == "column":
        return (
            "EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attname = %s AND NOT attisdropped)",
            (obj.qualified, obj.column),
        )
    if obj.kind == "type":
        return "to_regtype(%s) IS NOT NULL", (obj.qualified,)
    if obj.kind == "schema":
        return "to_regnamespace(%s) IS NOT NULL", (ident(obj.name),)
    if obj.kind == "extension":
        return "EXISTS (SELECT FROM pg_extension WHERE extname = %s)", (obj.name,)
    return (  # a function, in its schema or anywhere on the search_path
        "EXISTS (SELECT FROM pg_proc WHERE proname = %s AND "
        "(%s::text IS NULL AND pronamespace IN "
        "(SELECT oid FROM pg_namespace WHERE nspname = ANY (current_schemas(true))) "
        "OR pronamespace = to_regnamespace(%s)))",
        (obj.name, obj.schema, ident(obj.schema) if obj.schema else None),
    )


def missing_objects(conn: psycopg.Connection[Any], objects: list[DbObject]) -> list[DbObject]:
    """The objects that do not exist, checked in one round trip."""
    if not objects:
        return []
    parts, params = zip(*(_exists_sql(o) for o in objects), strict=True)
    row = conn.execute(
        "SELECT " + ", ".join(parts), tuple(p for group in params for p in group)
    ).fetchone()
    return [o for o, ok in zip(objects, row or (), strict=True) if not ok]


def baseline(
    target: Target,
    version: int,
    sql_dir: str | os.PathLike[str] | None = None,
    **options: Unpack[OptionValues],
) -> AdoptReport:
    """Mark every forward file up to ``version`` applied on a database built without a ledger.

    CLI: ``sqlrunner baseline V``. Refused (exit 2) when the ledger already records a
    forward file (use ``repair --mark-applied`` then), when no file is at or below V,
    or when an object those files create is missing (each one is named: the
    database is not at V). Seeds are not marked: the next apply runs them, and they
    are idempotent. Exit codes: 0 done; 2 refused; 3 cannot connect; 5 another
    runner holds the lock.
    """
    files = load_migration_set(resolve_sql_dir(sql_dir))
    chosen = [m for m in files.forward if m.version <= version]
    if not chosen:
        raise UsageError(f"no forward file at or below version {version:04d}")
    objects: dict[DbObject, None] = {}
    for script in parse_all(chosen):
        for statement in script.statements:
            gone = dropped_names(statement.kind, statement.fields)
            for obj in list(objects):
                if (obj.column or obj.name) in gone:
                    del objects[obj]
            objects.update(dict.fromkeys(created_objects(statement.kind, statement.fields)))

    def check(conn: psycopg.Connection[Any], rows: set[tuple[str, int]]) -> list[str]:
        recorded = sorted(v for k, v in rows if k == "forward")
        if recorded:
            return [
                f"the ledger already records {len(recorded)} forward file(s) "
                f"({recorded[0]:04d} first): use `repair --mark-applied` instead"
            ]
        return [
            f"{obj} does not exist (created by a file at or below {version:04d})"
            for obj in missing_objects(conn, list(objects))
        ]

    return record_marks(
        target,
        [Mark(m, f"baseline {version:04d}: schema built outside sqlrunner") for m in chosen],
        "baseline",
        Options(**options),
        check=check,
    )
