"""The batched file kind: one DML statement over ``[:lo, :hi)`` of an integer key.

```
-- sqlrunner: batched table=public.llm_usage_logs key=id size=10000 target=500ms
UPDATE public.llm_usage_logs u SET ... WHERE u.id >= :lo AND u.id < :hi AND ...;
```

The bounds are psql variables so a DBA runs one batch by hand with
``psql -X -v ON_ERROR_STOP=1 -v lo=1 -v hi=10001 -f FILE``; the runner substitutes
them exactly where psql would (not inside quotes, comments or dollar quotes),
found with PostgreSQL's own scanner. The header's options:

- ``table=`` the table whose key range is fixed when the file starts (schema optional);
- ``key=`` its integer column (smallint, integer or bigint);
- ``size=`` the width of the first batch's key range;
- ``target=`` the batch duration the size adapts to (default 500ms; ``off``: fixed size);
- ``derived=`` the columns the backfill fills with values computed from other data
  (comma-separated): the rollback data-loss check does not count them as data.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NoReturn

from pglast.parser import ParseError, scan
from psycopg import sql

from .errors import InvalidMigrationSet, Problem, UsageError
from .files import BATCHED_MARK as MARK
from .files import Migration
from .session import duration_ms
from .sqltext import Script, Statement, split_statements

OPTIONS = ("table", "key", "size", "target", "derived")
DEFAULT_TARGET_MS = 500
# The statements a batch may be: each changes rows of its key range and nothing else.
DML_KINDS = frozenset({"UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt"})
BOUNDS = ("lo", "hi")
_NAME = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE = re.compile(rf"^(?:(?P<schema>{_NAME})\.)?(?P<table>{_NAME})$")
_COLUMN = re.compile(rf"^{_NAME}$")
_SIZE = re.compile(r"^[1-9][0-9_]*$")
MAX_KEY = 2**63 - 1
USAGE = (
    "e.g. '-- sqlrunner: batched table=public.events key=id size=10000' "
    "(optional: target=500ms, derived=col1,col2)"
)


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """What the header says: the table, its key, and how big batches start and aim to be."""

    schema: str | None
    table: str
    key: str
    size: int
    target_ms: int | None  # None: the size never adapts
    derived: tuple[str, ...] = ()

    @property
    def table_sql(self) -> sql.Identifier:
        names = (self.schema, self.table) if self.schema else (self.table,)
        return sql.Identifier(*names)

    @property
    def table_name(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True, slots=True)
class Batched:
    """A parsed batched file: its header, its one statement, and where ``:lo``/``:hi`` are."""

    spec: BatchSpec
    statement: Statement
    # (offset in the statement's text, "lo" | "hi"), ascending; each occupies 3 characters
    bounds: tuple[tuple[int, str], ...]

    def render(self, lo: int, hi: int) -> str:
        """The statement with the bounds as literals, as ``psql -v lo=.. -v hi=..`` sends it."""
        return render(self.statement.text, self.bounds, lo, hi)[0]

    def position_in_file(self, lo: int, hi: int, rendered_position: int) -> int:
        """A 1-based error position in the rendered statement, mapped onto its text."""
        return original_position(self.statement.text, self.bounds, lo, hi, rendered_position)


def parse_header(line: str) -> BatchSpec:
    """The header's options; ValueError says what is wrong with them, in one line."""
    match = MARK.match(line)
    if match is None:
        raise ValueError(f"not a batched header: {USAGE}")
    found: dict[str, str] = {}
    for word in line[match.end() :].split():
        name, equals, value = word.partition("=")
        if not equals or not value:
            raise ValueError(f"{word!r} is not name=value: {USAGE}")
        if name not in OPTIONS:
            raise ValueError(f"unknown option {name!r}: the options are {', '.join(OPTIONS)}")
        if name in found:
            raise ValueError(f"{name}= given twice")
        found[name] = value
    missing = [name for name in ("table", "key", "size") if name not in found]
    if missing:
        raise ValueError(f"missing {', '.join(n + '=' for n in missing)}: {USAGE}")
    table = _TABLE.match(found["table"])
    if table is None:
        raise ValueError(f"table={found['table']}: give a table name such as public.events")
    if not _COLUMN.match(found["key"]):
        raise ValueError(f"key={found['key']}: give the name of an integer column such as id")
    if not _SIZE.match(found["size"]) or int(found["size"]) > MAX_KEY:
        raise ValueError(f"size={found['size']}: give a positive number of keys, e.g. 10000")
    target: int | None = DEFAULT_TARGET_MS
    if "target" in found:
        target = None if found["target"] == "off" else duration_ms(found["target"], bare=None)
        if target is not None and target < 1:
            raise ValueError(f"target={found['target']}: give at least 1ms, or off")
    derived = tuple(c for c in found.get("derived", "").split(",") if c)
    bad = [c for c in derived if not _COLUMN.match(c)]
    if bad or ("derived" in found and not derived):
        raise ValueError(f"derived={found['derived']}: give column names such as a,b")
    # Unquoted names, so PostgreSQL folds them to lower case: so do we.
    return BatchSpec(
        table["schema"].lower() if table["schema"] else None,
        table["table"].lower(),
        found["key"].lower(),
        int(found["size"]),
        target,
        tuple(c.lower() for c in derived),
    )


def variables(text: str) -> list[tuple[int, str]]:
    """(character offset, raw text) of every psql variable reference ``:name``, ``:'name'``
    or ``:"name"`` outside quotes, comments and dollar quotes, as psql's lexer finds them.

    A colon the scanner reads as its own token followed at once by a word or a quoted
    name is psql's variable syntax; ``::`` is a cast and stays. None found in a text
    the scanner rejects: the parse that follows reports that error.
    """
    utf8 = text.encode()
    try:
        tokens = scan(text)
    except ParseError:
        return []
    found: list[tuple[int, str]] = []
    for colon, following in itertools.pairwise(tokens):
        if colon.name != "ASCII_58" or following.start != colon.end + 1:
            continue
        raw = utf8[following.start : following.end + 1].decode()
        if re.match(r"^[A-Za-z_\x80-\U0010ffff]", raw) or raw[:1] in "'\"":
            offset = len(utf8[: colon.start].decode())
            found.append((offset, ":" + raw))
    return found


def render(
    text: str, bounds: Sequence[tuple[int, str]], lo: int, hi: int
) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with each bound replaced by its literal; also (offset in the result,
    growth there) of each replacement, to map error positions back."""
    # psycopg writes a negative number with a space in front: "x-:lo" must not become "x--5"
    values = {"lo": sql.Literal(lo).as_string(), "hi": sql.Literal(hi).as_string()}
    pieces: list[str] = []
    shifts: list[tuple[int, int]] = []
    at = 0
    length = 0
    for offset, name in bounds:
        pieces.append(text[at:offset])
        length += offset - at
        literal = values[name]
        shifts.append((length, len(literal) - 3))
        pieces.append(literal)
        length += len(literal)
        at = offset + 3
    pieces.append(text[at:])
    return "".join(pieces), shifts


def original_position(
    text: str, bounds: Sequence[tuple[int, str]], lo: int, hi: int, position: int
) -> int:
    """Map a 1-based position in the rendered text to one in ``text`` (inside a
    substituted literal: the start of its ``:lo``/``:hi``)."""
    _, shifts = render(text, bounds, lo, hi)
    index = position - 1
    moved = 0
    for start, growth in shifts:
        if index < start:
            break
        if index < start + 3 + growth:
            return start - moved + 1
        moved += growth
    return index - moved + 1


def batched_script(migration: Migration) -> Script:
    """The one statement of a batched file, checked against the kind's rules (anything
    else is an InvalidMigrationSet naming path:line:column before anything runs)."""
    first_line = migration.text.split("\n", 1)[0]
    try:
        spec = parse_header(first_line.rstrip())
    except (ValueError, UsageError) as exc:
        _refuse(migration, 1, 1, f"invalid batched header: {exc}")
    found = variables(migration.text)
    _check_variables(migration, found)
    parsed = _one_statement(migration, found)
    own_text = migration.text[parsed.offset : parsed.offset + len(parsed.text)]
    statement = replace(parsed, text=own_text)
    inside = [
        (offset - parsed.offset, raw[1:])
        for offset, raw in found
        if parsed.offset <= offset < parsed.offset + len(parsed.text)
    ]
    missing = [name for name in BOUNDS if name not in {n for _, n in inside}]
    if missing:
        _refuse_at(
            migration,
            parsed,
            f"the statement must use {' and '.join(':' + n for n in missing)}: each batch "
            "covers keys >= :lo and < :hi",
        )
    return Script(migration, (statement,), batch=Batched(spec, statement, tuple(inside)))


def _check_variables(migration: Migration, found: list[tuple[int, str]]) -> None:
    """Only :lo and :hi, unquoted: the runner substitutes nothing else."""
    for offset, raw in found:
        if raw[1:] not in BOUNDS:
            line, column = _line_column(migration.text, offset)
            why = (
                f"write :{raw[2:-1]} without quotes (the bounds are integers)"
                if raw[1:2] in "'\"" and raw[2:-1] in BOUNDS
                else "a batched file may use only :lo and :hi"
            )
            _refuse(migration, line, column, f"psql variable {raw}: {why}")


def _one_statement(migration: Migration, found: list[tuple[int, str]]) -> Statement:
    """The file's single DML statement, parsed with the bounds stood in for."""
    # The parser cannot read ":lo": put a number of the same length there, so every
    # position the parser reports is the file's own.
    text = migration.text
    for offset, _ in found:
        text = text[:offset] + "000" + text[offset + 3 :]
    statements = split_statements(replace(migration, text=text))
    if not statements:
        _refuse(migration, 1, 1, "a batched file needs one UPDATE, DELETE, INSERT or MERGE")
    for statement in statements:
        if statement.kind == "TransactionStmt":
            _refuse_at(
                migration,
                statement,
                "no BEGIN/COMMIT in a batched file: the runner commits each batch with its "
                f"progress row: {statement.first_line}",
            )
    if len(statements) > 1:
        extra = statements[1]
        _refuse_at(
            migration,
            extra,
            f"a batched file holds exactly one statement, this is a second: {extra.first_line}",
        )
    (parsed,) = statements
    if parsed.kind not in DML_KINDS:
        _refuse_at(
            migration,
            parsed,
            f"a batched file's statement must be an UPDATE, DELETE, INSERT or MERGE: "
            f"{parsed.first_line}",
        )
    return parsed


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _refuse(migration: Migration, line: int, column: int, why: str) -> NoReturn:
    raise InvalidMigrationSet.listing([Problem(migration.shown_path, line, column, why)])


def _refuse_at(migration: Migration, statement: Statement, why: str) -> NoReturn:
    _refuse(migration, statement.line, statement.column, why)
