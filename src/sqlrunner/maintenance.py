"""Ledger repairs a DBA needs after editing or hand-running files, each recorded in the history."""

from __future__ import annotations

import os
from typing import Any

from . import ledger
from .api import Target, _session, resolve_sql_dir
from .errors import UsageError
from .files import MigrationSet, load_migration_set
from .ledger import LedgerTables, RunContext
from .plan import LedgerRow


def repair(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    accept: int | None = None,
    mark_applied: int | None = None,
    forget: int | None = None,
    forget_seeds: bool = False,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> str:
    """Change the ledger without running SQL; returns what was done, in one line.

    - ``accept``: an applied forward file was edited on purpose: record its new checksum
      (applied_at and applied_by stay: the file ran then, by them).
    - ``mark_applied``: a DBA ran a forward file by hand with psql: record it as applied.
    - ``forget``: an applied file was removed (or undone by hand): drop its ledger row.
    - ``forget_seeds``: the next apply re-runs every seed file (after a hand rollback).
    """
    chosen = [
        (action, version)
        for action, version in (
            ("accept", accept),
            ("mark-applied", mark_applied),
            ("forget", forget),
            ("forget-seeds", 0 if forget_seeds else None),
        )
        if version is not None
    ]
    if len(chosen) != 1:
        raise UsageError(
            "repair needs exactly one of --accept, --mark-applied, --forget, --forget-seeds"
        )
    action, version = chosen[0]
    files = load_migration_set(resolve_sql_dir(sql_dir))
    tables = LedgerTables(ledger_schema, ledger_table)
    ctx = RunContext.new()
    with _session(target, wait) as (conn, _conninfo, _shown):
        ledger.create_tables(conn, tables)
        rows = {r.version: r for r in ledger.read_rows(conn, tables) if r.kind == "forward"}
        if action == "forget-seeds":
            statements = [ledger.forget_seeds(tables)]
            what = "seed files: the next apply re-runs them"
            history = ledger.record_history(
                tables, ctx, action, "ok", kind="seed", detail="ledger repaired by hand"
            )
        else:
            statements, what = _forward_repair(tables, ctx, files, rows, action, version)
            history = ledger.record_history(
                tables,
                ctx,
                action,
                "ok",
                kind="forward",
                version=version,
                name=what.split("_", 1)[1],
                detail="ledger repaired by hand",
            )
        conn.execute("; ".join(["BEGIN", *statements, history, "COMMIT"]))
    return f"{action} {what}: recorded in the ledger and its history"


def _forward_repair(
    tables: LedgerTables,
    ctx: RunContext,
    files: MigrationSet,
    rows: dict[int, LedgerRow],
    action: str,
    version: int,
) -> tuple[list[str], str]:
    """The ledger statements for accept / mark-applied / forget of one forward version."""
    if action == "forget":
        if version not in rows:
            raise UsageError(f"version {version:04d} is not in the ledger")
        return [
            ledger.record_removed(tables, "forward", version),
            ledger.clear_progress(tables, version),
        ], f"{version:04d}_{rows[version].name}"
    migration = files.forward_by_version(version)
    if migration is None:
        raise UsageError(f"no forward file with version {version:04d}")
    label = f"{version:04d}_{migration.name}"
    if action == "accept":
        if version not in rows:
            raise UsageError(f"{migration.display_path} is not applied; nothing to accept")
        return [ledger.record_accepted(tables, version, migration.name, migration.checksum)], label
    if version in rows:
        raise UsageError(f"{migration.display_path} is already applied")
    return [
        ledger.record_applied(
            tables, "forward", version, migration.name, migration.checksum, "0", ctx
        ),
        ledger.clear_progress(tables, version),
    ], label


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
