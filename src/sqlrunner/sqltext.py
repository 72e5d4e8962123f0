"""SQL text, understood by PostgreSQL's own parser (pglast wraps libpg_query).

Splitting on semicolons with a regex breaks on dollar quotes, comments, E''
strings and function bodies; the real parser does not. A file is parsed once,
whole: libpg_query's JSON parse tree (plain dicts, about six times faster to
build than pglast's AST objects) gives every statement's kind, fields and byte
position, and the positions become line:column in one pass over the text, so a
file of N statements costs O(N). Nothing here needs a database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from pglast.parser import ParseError, parse_sql_json

from .errors import InvalidMigrationSet, MigrationFailed, Problem, SqlErrorDetail
from .files import Migration
from .position import is_batched

if TYPE_CHECKING:
    from .batched import Batched

ALLOWED_BEFORE_BEGIN = frozenset({"lock_timeout", "statement_timeout"})
# Each statement is one round trip inside the file's transaction: past this a file is a
# data load (use COPY), and its parse tree alone runs to gigabytes.
MAX_STATEMENTS = 100_000
NOTHING_RAN = "nothing was run; fix the file and run the command again"
SYNTAX_ERROR = "42601"  # what PostgreSQL answers for the same text


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Script:
    """The statements the runner sends for one file, in order."""

    migration: Migration
    statements: tuple[Statement, ...]
    # the SETs before a transactional file's BEGIN, and its COMMIT (for error positions)
    preamble: tuple[Statement, ...] = ()
    commit: Statement | None = None
    # a batched file (batched.py): its header and the bounds in its one statement
    batch: Batched | None = None


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset (one lookup; see ``_positions``)."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _positions(utf8: bytes, offsets: Iterable[int]) -> Iterator[tuple[int, int, int]]:
    """(character offset, line, column) of each ascending byte offset, in one pass.

    Looking each one up from the start of the file made a file of N statements
    cost N times its length: 200,000 statements took minutes.
    """
    byte = char = line_start = 0
    line = 1
    for offset in offsets:
        chunk = utf8[byte:offset].decode("utf-8")
        newlines = chunk.count("\n")
        if newlines:
            line += newlines
            line_start = char + chunk.rindex("\n") + 1
        char += len(chunk)
        byte = offset
        yield char, line, char - line_start + 1


def split_statements(migration: Migration) -> tuple[Statement, ...]:
    """Every top-level statement with its position, in O(size of the file).

    A syntax error is MigrationFailed (SQLSTATE 42601, nothing was run); a psql
    meta-command or a file over MAX_STATEMENTS is InvalidMigrationSet.
    """
    text = migration.text
    try:
        tree = parse_sql_json(text)
    except ParseError as exc:
        raise _parse_error(migration, exc) from None
    # Decoding the tree is most of the cost, so count before decoding: every statement but
    # an unterminated last one has a "stmt_len" (no other node of a raw parse tree has
    # one, and a JSON string cannot hold an unescaped quote).
    _refuse_over_limit(migration, tree.count('"stmt_len":'))
    nodes = json.loads(tree).get("stmts", [])
    _refuse_over_limit(migration, len(nodes))
    utf8 = text.encode("utf-8")
    spans = []
    for node in nodes:
        # stmt_location is the first token's byte offset; stmt_len runs to the semicolon
        # (0: to the end of the text); JSON leaves out zeros.
        start, length = node.get("stmt_location", 0), node.get("stmt_len", 0)
        chunk = utf8[start : start + length if length else len(utf8)]
        # bytes.strip() strips exactly the whitespace PostgreSQL's scanner skips
        spans.append((start + len(chunk) - len(chunk.lstrip()), start + len(chunk.rstrip())))
    statements = []
    located = _positions(utf8, (start for start, _ in spans))
    for index, (node, (start, end), (offset, line, column)) in enumerate(
        zip(nodes, spans, located, strict=True)
    ):
        ((kind, fields),) = node["stmt"].items()
        body = utf8[start:end].decode("utf-8")
        statements.append(Statement(index, body, offset, line, column, kind, fields))
    return tuple(statements)


def _refuse_over_limit(migration: Migration, statements: int) -> None:
    if statements > MAX_STATEMENTS:
        raise InvalidMigrationSet.listing(
            [
                Problem(
                    migration.shown_path,
                    None,
                    None,
                    f"{statements} statements is over the limit of {MAX_STATEMENTS} for one "
                    "file: split it, or load bulk data with COPY outside migrations",
                )
            ]
        )


def _parse_error(migration: Migration, exc: ParseError) -> InvalidMigrationSet | MigrationFailed:
    """A syntax error as PostgreSQL would report it running the file, before anything ran."""
    text = migration.text
    position = exc.args[1] if len(exc.args) > 1 else None
    # no position: "syntax error at end of input", just after the last token
    offset = position if isinstance(position, int) else len(text.rstrip())
    line, column = line_and_column(text, offset)
    if text.startswith("\\", offset):
        return _meta_command(migration, text, offset, line, column)
    variable = PSQL_VARIABLE.match(text, offset)
    if variable:  # :name, :'name', :"name": psql substitutes them before sending
        why = f"psql variable {variable[0]}: sqlrunner substitutes no psql variables"
        return InvalidMigrationSet.listing(
            [Problem(migration.shown_path, line, column, f"{why}; write the value itself instead")]
        )
    source_line = text[text.rfind("\n", 0, offset) + 1 :].split("\n", 1)[0]
    detail = SqlErrorDetail(
        path=migration.shown_path,
        line=line,
        column=column,
        sqlstate=SYNTAX_ERROR,
        message=str(exc.args[0]),
        detail=None,
        hint=None,
        statement=source_line.strip()[:120],
    )
    return MigrationFailed(detail, NOTHING_RAN)


PSQL_VARIABLE = re.compile(r":(?:[A-Za-z_]\w*|'[A-Za-z_]\w*'|\"[A-Za-z_]\w*\")")
# What to write instead of the psql meta-commands found in real migration sets.
META_COMMANDS = {
    ("set", "unset"): "write the value itself where the :variable is used",
    ("i", "ir", "include", "include_relative"): (
        "put the included file's SQL here, or make it a migration of its own"
    ),
    ("echo", "qecho", "warn"): "write a -- comment, or RAISE NOTICE in a DO block",
    ("gexec",): (
        "write a DO block that EXECUTEs each generated statement (format() with %I and %L "
        "quotes identifiers and values)"
    ),
    ("if", "elif", "else", "endif"): "write a DO block with IF ... END IF",
    ("c", "connect"): "write a migration set per database, each applied with its own --dsn",
    ("copy",): "write INSERT ... VALUES, or a COPY that reads a file on the server",
}


def _meta_command(
    migration: Migration, text: str, offset: int, line: int, column: int
) -> InvalidMigrationSet:
    """psql runs backslash commands itself; PostgreSQL never sees them and cannot parse them."""
    found = re.match(r"\\([A-Za-z_]+|\S?)\s*(\S*)", text[offset : offset + 200])
    name, argument = (found[1], found[2]) if found else ("", "")
    if name == "set" and argument.upper() == "ON_ERROR_STOP":
        advice = "delete the line: sqlrunner always stops at the first error"
    else:
        advice = next(
            (f"{what} instead" for names, what in META_COMMANDS.items() if name in names),
            "delete it, or write the SQL it stands for instead",
        )
    return InvalidMigrationSet.listing(
        [
            Problem(
                migration.shown_path,
                line,
                column,
                f"psql meta-command \\{name}: sqlrunner does not run psql meta-commands; {advice}",
            )
        ]
    )


def script_for(migration: Migration) -> Script:
    """The statements to run for a file, with the outer BEGIN/COMMIT removed.

    Transactional files must be one ``BEGIN; … COMMIT;`` pair (preceded at most by
    SET lock_timeout / statement_timeout, which protect hand runs and which the
    runner replaces with its own). Any other transaction control would commit part
    of a migration without its ledger row, so it is refused before anything runs.
    An empty or comment-only file is a transactional file with nothing in it.
    """
    if is_batched(migration):
        from .batched import batched_script  # that module imports this one

        return batched_script(migration)
    statements = split_statements(migration)
    if not statements:
        return Script(migration, ())
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
        _refuse(migration, where or statements[-1], why)
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


def problems_of(migration: Migration) -> tuple[Problem, ...]:
    """What ``script_for`` would refuse in this file (nothing: an empty tuple)."""
    try:
        script_for(migration)
    except InvalidMigrationSet as exc:
        return exc.problems
    except MigrationFailed as exc:
        return (_as_problem(exc),)
    return ()


def parse_scripts(run: Sequence[Migration], also_valid: Sequence[Migration] = ()) -> list[Script]:
    """The scripts of ``run``, once it and ``also_valid`` (files that must be sound but do
    not run now, like the rollback files of pending migrations) are free of problems.

    Every problem is reported at once. A syntax error is a SQL error in a file
    (MigrationFailed, exit 4) like one found while running; anything else is
    InvalidMigrationSet (exit 2).
    """
    scripts: list[Script] = []
    failures: list[InvalidMigrationSet | MigrationFailed] = []
    for position, migration in enumerate([*run, *also_valid]):
        try:
            script = script_for(migration)
        except (InvalidMigrationSet, MigrationFailed) as exc:
            failures.append(exc)
            continue
        if position < len(run):
            scripts.append(script)
    if not failures:
        return scripts
    syntax = next((f for f in failures if isinstance(f, MigrationFailed)), None)
    if syntax is None:
        raise InvalidMigrationSet.listing([p for f in failures for p in _problems(f)])
    others = [p.describe() for f in failures if f is not syntax for p in _problems(f)]
    also = f"; other problems: {'; '.join(others)}" if others else ""
    raise MigrationFailed(syntax.error, NOTHING_RAN + also)


def _problems(failure: InvalidMigrationSet | MigrationFailed) -> tuple[Problem, ...]:
    return failure.problems if isinstance(failure, InvalidMigrationSet) else (_as_problem(failure),)


def _as_problem(failure: MigrationFailed) -> Problem:
    e = failure.error
    return Problem(e.path, e.line, e.column, e.message, e.sqlstate)


def _refuse(migration: Migration, statement: Statement, why: str) -> NoReturn:
    raise InvalidMigrationSet.listing(
        [
            Problem(
                migration.shown_path,
                statement.line,
                statement.column,
                f"{why}: {statement.first_line}",
            )
        ]
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
