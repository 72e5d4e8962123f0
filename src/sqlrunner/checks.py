"""Run sql/verify files and collect their ``(check, ok, detail)`` rows.

Each file runs inside a READ ONLY transaction that is rolled back, so a verify
file cannot write even by mistake; an error becomes a failed check that names
the file and line instead of aborting the other checks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from .files import Migration
from .report import CheckResult, VerifyReport
from .sqltext import Script, line_and_column


def run_checks(
    conn: psycopg.Connection[tuple[Any, ...]], scripts: Sequence[Script], target: str
) -> VerifyReport:
    """Every check of every verify file, in file order."""
    started = time.monotonic()
    checks: list[CheckResult] = []
    for script in scripts:
        checks.extend(_run_file(conn, script))
    return VerifyReport(target, tuple(checks), int((time.monotonic() - started) * 1000))


def _run_file(conn: psycopg.Connection[tuple[Any, ...]], script: Script) -> list[CheckResult]:
    m = script.migration
    results: list[CheckResult] = []
    conn.execute("BEGIN READ ONLY")
    try:
        for statement in script.statements:
            try:
                cursor = conn.execute(statement.text)
            except psycopg.Error as exc:
                offset = statement.offset + max(0, int(exc.diag.statement_position or 1) - 1)
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
    finally:
        conn.execute("ROLLBACK")
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
