"""Where in its file a PostgreSQL error happened: path, line, column, and PostgreSQL's CONTEXT.

PostgreSQL gives a character position for errors found while parsing or
planning a statement, and for runtime errors inside PL/pgSQL a CONTEXT such as
``PL/pgSQL function inline_code_block line 3 at RAISE``, where "line 3" counts
from the first line of the block's (or function's) body, i.e. the line of its
opening dollar quote. Both are mapped onto the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from .errors import SqlErrorDetail
from .files import Migration
from .sqltext import Statement, line_and_column

_PLPGSQL_LINE = re.compile(r"PL/pgSQL function (?P<name>[^\s(]+)(?:\([^)]*\))? line (?P<line>\d+)")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$")


def shown_path(migration: Migration) -> str:
    """The file's path as the user typed it: relative to the working directory when inside it."""
    relative = os.path.relpath(migration.path)
    return migration.display_path if relative.startswith("..") else relative


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
        path=shown_path(m),
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
