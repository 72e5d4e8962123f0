"""Ledger repairs a DBA needs after editing or hand-running files, each recorded in the history."""

from __future__ import annotations

import os
from typing import Any

from . import ledger
from .api import Target, _session, resolve_sql_dir
from .errors import UsageError
from .files import load_migration_set
from .ledger import LedgerTables, RunContext


def repair(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    accept: int | None = None,
    mark_applied: int | None = None,
    forget: int | None = None,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> str:
    """Change the ledger without running SQL; returns what was done, in one line.

    - ``accept``: an applied forward file was edited on purpose: record its new checksum.
    - ``mark_applied``: a DBA ran a forward file by hand with psql: record it as applied.
    - ``forget``: an applied file was removed on purpose: drop its ledger row.
    """
    chosen = [
        (a, v)
        for a, v in (("accept", accept), ("mark-applied", mark_applied), ("forget", forget))
        if v is not None
    ]
    if len(chosen) != 1:
        raise UsageError("repair needs exactly one of --accept, --mark-applied, --forget")
    action, version = chosen[0]
    files = load_migration_set(resolve_sql_dir(sql_dir))
    tables = LedgerTables(ledger_schema, ledger_table)
    ctx = RunContext.new()
    with _session(target, wait) as (conn, _conninfo, _shown):
        ledger.create_tables(conn, tables)
        rows = {r.version: r for r in ledger.read_rows(conn, tables) if r.kind == "forward"}
        migration = files.forward_by_version(version)
        if action == "forget":
            if version not in rows:
                raise UsageError(f"version {version:04d} is not in the ledger")
            statements = [ledger.record_removed(tables, "forward", version)]
            name, checksum = rows[version].name, rows[version].checksum
        else:
            if migration is None:
                raise UsageError(f"no forward file with version {version:04d}")
            if action == "accept" and version not in rows:
                raise UsageError(f"{migration.display_path} is not applied; nothing to accept")
            if action == "mark-applied" and version in rows:
                raise UsageError(f"{migration.display_path} is already applied")
            statements = [
                ledger.record_applied(
                    tables, "forward", version, migration.name, migration.checksum, "0", ctx
                )
            ]
            name, checksum = migration.name, migration.checksum
        statements.append(ledger.clear_progress(tables, version))
        statements.append(
            ledger.record_history(
                tables,
                ctx,
                action,
                "ok",
                kind="forward",
                version=version,
                name=name,
                checksum=checksum,
                detail="ledger repaired by hand",
            )
        )
        conn.execute("; ".join(["BEGIN", *statements, "COMMIT"]))
    return f"{action} {version:04d}_{name}: recorded in the ledger and its history"


def history(
    target: Target,
    *,
    limit: int = 50,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> list[dict[str, Any]]:
    """The newest ``limit`` history rows: who did what, when, how long, with what outcome."""
    keys = (
        "at",
        "by",
        "client",
        "action",
        "kind",
        "version",
        "name",
        "outcome",
        "duration_ms",
        "detail",
    )
    with _session(target, wait) as (conn, _conninfo, _shown):
        rows = ledger.read_history(conn, LedgerTables(ledger_schema, ledger_table), limit)
    return [dict(zip(keys, row, strict=True)) for row in rows]
