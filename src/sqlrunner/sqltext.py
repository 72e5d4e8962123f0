"""SQL text, understood by PostgreSQL's own parser (pglast wraps libpg_query).

Splitting on semicolons with a regex breaks on dollar quotes, comments, E''
strings and function bodies; the real parser does not. A file is parsed once,
whole: libpg_query's JSON parse tree (plain dicts, about six times faster to
build than pglast's AST objects) gives every statement's kind, fields and byte
position, and the positions become line:column in one pass over the text, so a
file of N statements costs O(N). The parse tree also says which statements must
run alone or may wait for their lock, and where in its file a PostgreSQL error
happened. Nothing here needs a database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from pglast.parser import ParseError, parse_sql_json

from .errors import InvalidMigrationSet, MigrationFailed, Problem, SqlErrorDetail
from .files import Migration, is_batched, line_and_column

if TYPE_CHECKING:
    import psycopg

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


# Statements PostgreSQL refuses inside any transaction block, including the implicit
# one of a multi-statement message (PreventInTransactionBlock). Others it refuses
# are found at run time (SQLSTATE 25001 / 2D000) and sent alone then.
ALONE_KINDS = frozenset(
    {
        "CallStmt",  # a procedure may COMMIT
        "CreatedbStmt",
        "DropdbStmt",
        "AlterSystemStmt",
        "CreateTableSpaceStmt",
        "DropTableSpaceStmt",
        "CreateSubscriptionStmt",
        "AlterSubscriptionStmt",
        "DropSubscriptionStmt",
    }
)


def runs_alone(statement: Statement) -> bool:
    """True for statements that cannot share a message with any other statement."""
    fields = statement.fields
    if statement.kind in ALONE_KINDS:
        return True
    if statement.kind in ("IndexStmt", "DropStmt"):
        return bool(fields.get("concurrent"))
    if statement.kind == "ReindexStmt":
        return any(
            p.get("DefElem", {}).get("defname") == "concurrently" for p in fields.get("params", ())
        ) or fields.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE")
    if statement.kind == "VacuumStmt":
        return bool(fields.get("is_vacuumcmd"))
    if statement.kind == "DiscardStmt":
        return fields.get("target") == "DISCARD_ALL"
    if statement.kind == "ClusterStmt":
        return not fields.get("relation")
    return False


# --- where in its file a PostgreSQL error happened ---------------------------------------
# PostgreSQL gives a character position for errors found while parsing or planning a
# statement, and for runtime errors inside PL/pgSQL a CONTEXT such as "PL/pgSQL function
# inline_code_block line 3 at RAISE", where "line 3" counts from the line of the body's
# opening dollar quote. Both are mapped onto the file.

_PLPGSQL_LINE = re.compile(r"PL/pgSQL function (?P<name>[^\s(]+)(?:\([^)]*\))? line (?P<line>\d+)")
# $tag$: a letter, _ or any non-ASCII character, then those or digits. Written as "not
# ASCII punctuation" because a class spanning \x80-\U0010ffff takes ~17 ms to compile.
_DOLLAR_QUOTE = re.compile(
    r"\$(?:[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f][^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]*)?\$"
)


def sql_error(
    m: Migration,
    statement: Statement | None,
    exc: psycopg.Error,
    *,
    position: int | None = None,
    statements: Sequence[Statement] = (),
    first: str | None = None,
) -> SqlErrorDetail:
    """The error located in ``m``: at ``position`` (1-based, within ``statement``) when
    PostgreSQL gave one, else at the PL/pgSQL line its CONTEXT names (in this statement
    or in a function created by one of ``statements``), else at the statement's start."""
    diag = exc.diag
    context = " / ".join(line.strip() for line in (diag.context or "").splitlines() if line.strip())
    if statement is None:
        line, column = 1, 1
    elif position and 0 < position <= len(statement.text) + 1:
        line, column = line_and_column(m.text, statement.offset + position - 1)
    else:
        line, column = _context_line(m, statement, diag.context or "", statements) or (
            statement.line,
            statement.column,
        )
    return SqlErrorDetail(
        path=m.shown_path,
        line=line,
        column=column,
        sqlstate=diag.sqlstate or "?????",
        message=diag.message_primary or str(exc).strip(),
        detail=diag.message_detail,
        hint=diag.message_hint,
        statement=first or (statement.first_line if statement else m.display_path),
        context=context or None,
    )


def _context_line(
    m: Migration, statement: Statement, context: str, statements: Sequence[Statement]
) -> tuple[int, int] | None:
    """The innermost PL/pgSQL frame whose body is in this file, as (line, column)."""
    for match in _PLPGSQL_LINE.finditer(context):
        name, body_line = match["name"], int(match["line"])
        if name == "inline_code_block" and statement.kind == "DoStmt":
            start = _body_start(m, statement.fields.get("args", ()))
        else:
            start = next(
                (
                    _body_start(m, s.fields.get("options", ()))
                    for s in statements
                    if s.kind == "CreateFunctionStmt" and _function_name(s.fields) == name
                ),
                None,
            )
        if start is not None:
            line, _ = line_and_column(m.text, start)
            return _first_token(m.text, line + body_line - 1)
    return None


def _function_name(fields: Mapping[str, Any]) -> str:
    parts = [item["String"]["sval"] for item in fields.get("funcname", ()) if "String" in item]
    return str(parts[-1]) if parts else ""


def _body_start(m: Migration, options: Sequence[Mapping[str, Any]]) -> int | None:
    """Character offset just after the opening dollar quote of a DO/function body."""
    for option in options:
        element = option.get("DefElem", {})
        if element.get("defname") != "as":
            continue
        location = element.get("arg_location", -1)
        if location is None or location < 0:
            location = element.get("location", -1)
        if location is None or location < 0:
            return None
        # libpg_query locations count UTF-8 bytes
        offset = len(m.text.encode()[:location].decode(errors="ignore"))
        quote = _DOLLAR_QUOTE.match(m.text, offset)
        return offset + len(quote[0]) if quote else None
    return None


def _first_token(text: str, line: int) -> tuple[int, int]:
    """(line, column of its first non-blank character) for a 1-based line of ``text``."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return line, 1
    content = lines[line - 1]
    return line, len(content) - len(content.lstrip()) + 1
