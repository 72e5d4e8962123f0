"""Ledger repairs a DBA needs after editing or hand-running files, each recorded in the history."""

from __future__ import annotations

import os
from typing import Any

from . import ledger
from .api import Target, _session, resolve_sql_dir
from .errors import UsageError
from .events import Event, Listener, fan_out
from .files import MigrationSet, load_migration_set
from .ledger import LedgerTables, RunContext
from .locking import RunnerLock
from .plan import LedgerRow


def repair(
    target: Target,
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    accept: int | None = None,
    mark_applied: int | None = None,
    forget: int | None = None,
    forget_seeds: bool = False,
    reapply: bool = False,
    wait: float = 0,
    runner_wait: float = 300,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
    on_event: Listener | None = None,
) -> str:
    """Change the ledger without running SQL; returns what was done, in one line.

    - ``accept``: an applied forward file was edited on purpose: record its new checksum
      (applied_at and applied_by stay: the file ran then, by them).
    - ``mark_applied``: a DBA ran a forward file by hand with psql: record it as applied.
    - ``forget``: an applied file was removed: drop its ledger row. A file that still
      exists would be applied again by the next apply, so that is refused unless
      ``reapply`` says it is the point (the DBA undid it by hand and wants it re-run).
    - ``forget_seeds``: the next apply re-runs every seed file (after a hand rollback).

    A repair holds the runner lock, like apply and rollback: it waits up to
    ``runner_wait`` seconds for a run in progress (RunnerBusy after that), then
    decides on the ledger as that run left it.
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
    emit = fan_out(on_event)
    with (
        _session(target, wait) as (conn, conninfo, _shown),
        RunnerLock(
            conninfo,
            tables.lock_key,
            runner_wait,
            application_name=f"sqlrunner repair ({ctx.client})",
            on_wait=lambda message: emit(Event("waiting", message)),
        ),
    ):
        ledger.create_tables(conn, tables)
        rows = {r.version: r for r in ledger.read_rows(conn, tables) if r.kind == "forward"}
        if action == "forget-seeds":
            statements = [ledger.forget_seeds(tables)]
            what = "seed files: the next apply re-runs them"
            history = ledger.record_history(
                tables, ctx, action, "ok", kind="seed", detail="ledger repaired by hand"
            )
        else:
            statements, what = _forward_repair(tables, ctx, files, rows, action, version, reapply)
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
    reapply: bool,
) -> tuple[list[str], str]:
    """The ledger statements for accept / mark-applied / forget of one forward version."""
    if action == "forget":
        if version not in rows:
            raise UsageError(f"version {version:04d} is not in the ledger")
        still_here = files.forward_by_version(version)
        if still_here is not None and not reapply:
            raise UsageError(
                f"{still_here.display_path} still exists: forgetting it makes the next apply "
                "run it again | nothing was changed; delete the file first, use rollback to "
                "undo it, or if it was undone by hand and should run again, confirm with "
                "--reapply"
            )
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
