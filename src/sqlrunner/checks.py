"""Verify files, run on a connection they are given: each returns ``(check, ok, detail)``
rows, the checks of a VerifyReport.

Verify is read-only and bounded, whatever the file says:

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

(The module is not called verify.py: importing a submodule ``sqlrunner.verify``
would set the package's ``verify`` attribute to that module, over ``sqlrunner.verify()``.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from .errors import InvalidMigrationSet
from .files import Migration, line_and_column
from .report import CheckResult, VerifyReport
from .session import SEPARATOR, SessionState, literal
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
    bounds = check_bounds(lock_timeout, statement_timeout)
    checks: list[CheckResult] = []
    for script in scripts:
        checks.extend(_run_file(conn, script, bounds, state))
    return VerifyReport(target, tuple(checks), int((time.monotonic() - started) * 1000))


def check_bounds(lock_timeout: str, statement_timeout: str) -> list[str]:
    """The runner's limits, sent again in front of each check statement (a verify file
    cannot SET them; sent with each, they hold whatever a statement before did)."""
    return [
        f"SET LOCAL lock_timeout = {literal(lock_timeout)}",
        f"SET LOCAL statement_timeout = {literal(statement_timeout)}",
    ]


def file_opening(bounds: Sequence[str]) -> list[str]:
    """Sent after BEGIN: SELECT 1 takes the transaction's snapshot, and from then on it
    cannot become read-write."""
    return ["SET TRANSACTION READ ONLY", *bounds, "SELECT 1"]


def _run_file(
    conn: psycopg.Connection[tuple[Any, ...]],
    script: Script,
    bounds: Sequence[str],
    state: SessionState | None,
) -> list[CheckResult]:
    """One message per statement, its parts joined as ``session.send`` joins them."""
    m = script.migration
    results: list[CheckResult] = []
    prefix = SEPARATOR.join([*bounds, ""])
    try:
        with conn.transaction(force_rollback=True):  # psycopg sends BEGIN, then ROLLBACK
            conn.execute(SEPARATOR.join(file_opening(bounds)))
            for statement in script.statements:
                try:
                    cursor = conn.execute(prefix + statement.text)
                    while cursor.nextset():
                        pass  # the statement's own result is the last one
                except psycopg.Error as exc:
                    position = int(exc.diag.statement_position or 0) - len(prefix)
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
            conn.execute(SEPARATOR.join(release))
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
