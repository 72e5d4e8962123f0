"""SQL text, understood by PostgreSQL's own parser (pglast wraps libpg_query).

Splitting on semicolons with a regex breaks on dollar quotes, comments, E''
strings and function bodies; the real parser does not. pglast is imported
lazily: the no-op path (nothing pending) never parses anything. Statements are
read from libpg_query's JSON parse tree (plain dicts), which is about six times
faster than building pglast's Python AST objects, and pgparser.py loads only
pglast's C extension, not the package (4 ms instead of 35-90 ms).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import pgparser
from .errors import InvalidMigrationSet
from .files import Migration

ALLOWED_BEFORE_BEGIN = frozenset({"lock_timeout", "statement_timeout"})


@dataclass(frozen=True)
class Statement:
    """One top-level statement: its text, where it starts, and what the parser saw."""

    index: int
    text: str
    offset: int
    line: int
    column: int
    kind: str = ""  # the parse node's type, e.g. "IndexStmt"
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def first_line(self) -> str:
        return self.text.strip().split("\n", 1)[0][:120]


@dataclass(frozen=True)
class Script:
    """The statements the runner sends for one file, in order."""

    migration: Migration
    statements: tuple[Statement, ...]
    # the SETs before a transactional file's BEGIN, and its COMMIT (for error positions)
    preamble: tuple[Statement, ...] = ()
    commit: Statement | None = None


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def split_statements(migration: Migration) -> tuple[Statement, ...]:
    """Every top-level statement with its position; a syntax error is InvalidMigrationSet."""
    parser = pgparser.parser()
    text = migration.text
    try:
        nodes = json.loads(parser.parse_sql_json(text))["stmts"]
        slices = parser.split(text, only_slices=True)
    except parser.ParseError as exc:
        message, offset = exc.args[0], exc.args[1] if len(exc.args) > 1 else 0
        line, column = line_and_column(text, offset)
        raise InvalidMigrationSet(
            f"{migration.display_path}:{line}:{column}: syntax error: {message}"
        ) from None
    statements = []
    for index, (part, raw) in enumerate(zip(slices, nodes, strict=True)):
        line, column = line_and_column(text, part.start)
        ((kind, fields),) = raw["stmt"].items()
        statements.append(Statement(index, text[part], part.start, line, column, kind, fields))
    return tuple(statements)


def script_for(migration: Migration) -> Script:
    """The statements to run for a file, with the outer BEGIN/COMMIT removed.

    Transactional files must be one ``BEGIN; … COMMIT;`` pair (preceded at most by
    SET lock_timeout / statement_timeout, which protect hand runs and which the
    runner replaces with its own). Any other transaction control would commit part
    of a migration without its ledger row, so it is refused before anything runs.
    """
    statements = split_statements(migration)
    if migration.no_transaction or migration.kind == "verify":
        for statement in statements:
            if _transaction_kind(statement) is not None:
                _refuse(migration, statement, "transaction control is not allowed in this file")
        return Script(migration, statements)
    kinds = [_transaction_kind(s) for s in statements]
    begin_at = next((i for i, kind in enumerate(kinds) if kind is not None), -1)
    if begin_at < 0 or kinds[begin_at] not in ("BEGIN", "START"):
        why = "must be wrapped in BEGIN; ... COMMIT; (or start with '-- sqlrunner: no-transaction')"
        # Point at the first statement that needed a BEGIN in front of it.
        where = next((s for s in statements if _set_name(s) not in ALLOWED_BEFORE_BEGIN), None)
        if where is None and statements:
            where = statements[-1]
        if where is None:
            raise InvalidMigrationSet(f"{migration.display_path}: {why}")
        _refuse(migration, where, why)
    for statement in statements[:begin_at]:
        if _set_name(statement) not in ALLOWED_BEFORE_BEGIN:
            _refuse(
                migration, statement, "only SET lock_timeout / statement_timeout may precede BEGIN"
            )
    _refuse_options(migration, statements[begin_at])
    last = statements[-1]
    if _transaction_kind(last) != "COMMIT" or last.index == begin_at:
        _refuse(migration, last, "the last statement must be the COMMIT of its BEGIN")
    body = statements[begin_at + 1 : -1]
    for statement in body:
        if _transaction_kind(statement) is not None:
            _refuse(migration, statement, "transaction control inside BEGIN ... COMMIT")
    return Script(migration, body, statements[:begin_at], last)


def _refuse(migration: Migration, statement: Statement, why: str) -> None:
    raise InvalidMigrationSet(
        f"{migration.display_path}:{statement.line}:{statement.column}: {why}: "
        f"{statement.first_line}"
    )


def _refuse_options(migration: Migration, statement: Statement) -> None:
    if statement.fields.get("options"):
        _refuse(migration, statement, "BEGIN options are not supported (the runner sets them)")


def _transaction_kind(statement: Statement) -> str | None:
    if statement.kind != "TransactionStmt":
        return None
    kind = str(statement.fields["kind"]).removeprefix("TRANS_STMT_")
    if kind == "COMMIT" and statement.fields.get("chain"):
        return "COMMIT AND CHAIN"
    return kind


def _set_name(statement: Statement) -> str | None:
    if statement.kind != "VariableSetStmt" or statement.fields.get("is_local"):
        return None
    name = statement.fields.get("name")
    return str(name) if name else None


def _relation(fields: Mapping[str, Any]) -> tuple[str | None, str]:
    relation = fields["relation"]
    return relation.get("schemaname") or None, str(relation["relname"])


def _commands(fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c["AlterTableCmd"] for c in fields.get("cmds", ()) if "AlterTableCmd" in c]


def concurrent_index(statement: Statement) -> tuple[str | None, str, str] | None:
    """(table schema, table, index name) of a ``CREATE INDEX CONCURRENTLY``, else None."""
    fields = statement.fields
    if statement.kind != "IndexStmt" or not fields.get("concurrent") or not fields.get("idxname"):
        return None
    return (*_relation(fields), str(fields["idxname"]))


def runs_without_lock_timeout(statement: Statement) -> bool:
    """True for statements that never block writers and may wait as long as they need.

    CREATE/DROP INDEX CONCURRENTLY and ALTER TABLE ... VALIDATE CONSTRAINT take
    SHARE UPDATE EXCLUSIVE, which does not conflict with the ROW EXCLUSIVE lock
    that INSERT/UPDATE/DELETE take; a lock_timeout would only make them fail.
    """
    if statement.kind in ("IndexStmt", "DropStmt"):
        return bool(statement.fields.get("concurrent"))
    if statement.kind == "AlterTableStmt":
        commands = _commands(statement.fields)
        return bool(commands) and all(c["subtype"] == "AT_ValidateConstraint" for c in commands)
    return False


def dropped_objects(
    statement: Statement,
) -> tuple[list[tuple[str | None, str]], list[tuple[str | None, str, str]]]:
    """Tables and (table, column) pairs a rollback statement drops, for the data-loss check."""
    fields = statement.fields
    tables: list[tuple[str | None, str]] = []
    columns: list[tuple[str | None, str, str]] = []
    if statement.kind == "DropStmt" and fields.get("removeType") == "OBJECT_TABLE":
        for name in fields.get("objects", ()):
            parts = [item["String"]["sval"] for item in name["List"]["items"]]
            tables.append((parts[-2] if len(parts) > 1 else None, parts[-1]))
    elif statement.kind == "AlterTableStmt":
        schema, table = _relation(fields)
        for command in _commands(fields):
            if command["subtype"] == "AT_DropColumn":
                columns.append((schema, table, str(command["name"])))
    return tables, columns


def inserted_rows(statement: Statement) -> tuple[str | None, str, int] | None:
    """(schema, table, VALUES rows) of an INSERT: a seed's rows count as seed data."""
    if statement.kind != "InsertStmt":
        return None
    select = statement.fields.get("selectStmt", {}).get("SelectStmt", {})
    return (*_relation(statement.fields), len(select.get("valuesLists", ())))
