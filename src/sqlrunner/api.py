"""The core shared by the library and the CLI: plan, then (if needed) lock and execute.

None of these functions print or exit; they log to ``logging.getLogger("sqlrunner")``,
raise SqlRunnerError subclasses, and return report values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from .events import Listener
    from .report import CheckReport
    from .sqltext import Script

from . import ledger
from .errors import DataLossRefused, OutOfOrder, Problem, UsageError, VerificationFailed
from .files import Migration, MigrationSet, load_migration_set, read_migration_set
from .ledger import LedgerTables
from .locking import RetryPolicy, lock_timeout_ms
from .plan import (
    ApplyPlan,
    LedgerRow,
    file_states,
    future_note,
    out_of_order,
    out_of_order_note,
    plan_apply,
    plan_rollback,
    refuse_drift,
    stopped_in_front_of,
)
from .position import BackfillPosition, Throttle, is_batched, read_positions
from .report import ApplyReport, FileResult, RollbackReport, StatusReport, VerifyReport, elapsed_ms
from .target import connect, mask_password

Target = str | psycopg.Connection[Any]
# A directory, or a set already loaded by a caller that applies repeatedly in one process.
SqlDir = str | os.PathLike[str] | MigrationSet | None
DEFAULT_LOCK_RETRIES = RetryPolicy().retries


def load_files(sql_dir: SqlDir) -> MigrationSet:
    """The migration set, read before connecting (a broken set is the error to report first)."""
    if isinstance(sql_dir, MigrationSet):
        return sql_dir
    return load_migration_set(resolve_sql_dir(sql_dir))


def resolve_sql_dir(sql_dir: str | os.PathLike[str] | None) -> Path:
    """``sql_dir`` if given, else ./sql when it exists, else the set shipped in the package."""
    if sql_dir is not None:
        return Path(sql_dir)
    local = Path("sql")
    if local.is_dir():
        return local
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"  # an editable install of the repo


@contextmanager
def _session(target: Target, wait: float) -> Iterator[tuple[psycopg.Connection[Any], str, str]]:
    """(connection, conninfo for the lock connection, masked target) for one run."""
    if isinstance(target, psycopg.Connection):
        if target.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise UsageError("the connection given to sqlrunner must not be inside a transaction")
        autocommit, threshold = target.autocommit, target.prepare_threshold
        target.autocommit, target.prepare_threshold = True, None
        params = {o.keyword.decode(): o.val.decode() for o in target.pgconn.info if o.val}
        try:
            yield target, psycopg.conninfo.make_conninfo(**params), mask_password(target.info.dsn)
        finally:
            _hand_back(target, autocommit, threshold)
        return
    conn = connect(target, wait=wait)
    try:
        yield conn, target, mask_password(target)
    finally:
        conn.close()


def _hand_back(conn: psycopg.Connection[Any], autocommit: bool, threshold: int | None) -> None:
    """The caller's connection as it came: no open transaction, its own autocommit and
    prepare_threshold (the runner restores session settings after each file itself).

    Never raises: on an interrupted or failed run the original error is what matters,
    and a connection that died stays closed for the caller to see.
    """
    if conn.closed:
        return
    with suppress(psycopg.Error):
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
    with suppress(psycopg.Error):
        conn.autocommit = autocommit
    conn.prepare_threshold = threshold


def _require_supported_server(conn: psycopg.Connection[Any]) -> None:
    """PostgreSQL 14.4+: 14.0-14.3 could corrupt indexes built concurrently (no round trip)."""
    version = conn.info.server_version
    if version < 140004:
        raise UsageError(f"PostgreSQL 14.4 or newer is required; this server is {version}")


def parse_all(
    migrations: Sequence[Migration], also_valid: Sequence[Migration] = ()
) -> list[Script]:
    """Parse every file that will run (and check ``also_valid``), so a broken one stops the
    run before anything runs; every problem is reported at once."""
    if not migrations and not also_valid:
        return []
    from .sqltext import parse_scripts  # pglast loads only when something will run

    return parse_scripts(migrations, also_valid)


def check(sql_dir: SqlDir = None) -> CheckReport:
    """Every problem of the whole set at once, without a database: names, versions, pairs,
    NUL bytes and sizes, then every forward, rollback, seed and verify file parsed and held
    to its transaction rules.

    Problems are reported, never raised: ``report.ok`` is False when there is any
    (the CLI exits 2), and each carries path, line, column and message.
    """
    from .report import CheckReport
    from .sqltext import problems_of

    problems: tuple[Problem, ...] = ()
    if isinstance(sql_dir, MigrationSet):
        files = sql_dir
    else:
        files, problems = read_migration_set(resolve_sql_dir(sql_dir))
    found = (*problems, *(p for m in files for p in problems_of(m)))
    return CheckReport(str(files.root), len(tuple(files)), found)


def apply(
    target: Target,
    sql_dir: SqlDir = None,
    *,
    to: int | None = None,
    seed: bool = True,
    verify: bool = True,
    dry_run: bool = False,
    strict_order: bool = False,
    lock_timeout: str | int = "200ms",
    lock_retries: int = DEFAULT_LOCK_RETRIES,
    wait: float = 0,
    runner_wait: float = 300,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
    on_event: Listener | None = None,
    strict: bool = False,
    budget: float | None = None,
    between_batches: Callable[[], None] | None = None,
) -> ApplyReport:
    """Apply pending forward files, then new or changed seeds, then verify.

    When nothing is pending this costs one query after connecting: no lock, no
    catalog scan, no verify. Safe to call from several processes at once.
    Versions applied by a newer release ("future") are a warning and a note in
    the report; ``strict=True`` refuses them (FutureVersions, exit 2).
    ``strict_order`` refuses (OutOfOrder) a pending file older than the newest applied.
    Batched files stop cleanly between batches once ``budget`` seconds have passed
    (BackfillPending, exit 6: the next apply continues); ``between_batches`` is called
    between their batches (to wait for replicas, say).
    """
    started = time.monotonic()
    throttle = Throttle(budget, between_batches, started)
    tables = LedgerTables(ledger_schema, ledger_table)
    policy = RetryPolicy(lock_timeout_ms(lock_timeout), lock_retries)
    return _apply(
        target,
        load_files(sql_dir),
        tables,
        policy,
        started,
        to=to,
        seed=seed,
        verify=verify,
        dry_run=dry_run,
        strict_order=strict_order,
        wait=wait,
        runner_wait=runner_wait,
        on_event=on_event,
        strict=strict,
        throttle=throttle,
    )


def _apply(
    target: Target,
    files: MigrationSet,
    tables: LedgerTables,
    policy: RetryPolicy,
    started: float,
    *,
    to: int | None,
    seed: bool,
    verify: bool,
    dry_run: bool,
    strict_order: bool,
    wait: float,
    runner_wait: float,
    on_event: Listener | None,
    strict: bool,
    throttle: Throttle | None = None,
) -> ApplyReport:
    with _session(target, wait) as (conn, conninfo, shown):
        _require_supported_server(conn)
        rows = ledger.read_rows(conn, tables, when=False)
        refuse_drift(files, rows, strict=strict)
        plan = plan_apply(files, rows, to_version=to, seed=seed, verify=verify)
        notes = _apply_notes(plan, on_event) + _order_notes(plan.forward, rows, strict_order)
        # the rollback files of what is about to be applied must be sound too
        undo = [r for r in map(files.rollback_for, (m.version for m in plan.forward)) if r]
        if dry_run or (plan.empty and not _partial_seeds_may_run(files, rows, plan)):
            parse_all([*plan.forward, *plan.seeds], undo)
            would = tuple(_would(m, "would apply") for m in plan.forward) if dry_run else ()
            seeds = tuple(_would(m, "would seed") for m in plan.seeds) if dry_run else ()
            return ApplyReport(shown, would, seeds, None, elapsed_ms(started), dry_run, notes)
        # Imported here, not at the top: the no-op path above never needs the executor,
        # and `import sqlrunner` is on every service's start-up path.
        from .execute import LockedRun
        from .notices import relay_server_messages

        scripts = parse_all([*plan.forward, *plan.seeds, *plan.verify], undo)
        with relay_server_messages(conn, on_event) as listener:
            run = LockedRun(
                conn, conninfo, tables, policy, runner_wait, listener, shown, started, throttle
            )
            return run.apply(
                files, scripts, to=to, seed=seed, verify=verify, notes=notes, strict=strict
            )


def _partial_seeds_may_run(files: MigrationSet, rows: list[LedgerRow], plan: ApplyPlan) -> bool:
    """``apply --to V`` with nothing pending may still have seeds to try (issue 17)."""
    if not plan.seeds_deferred:
        return False
    from .seedtargets import seeds_may_run

    return seeds_may_run(files, rows, plan)


def _apply_notes(plan: ApplyPlan, on_event: Listener | None) -> tuple[str, ...]:
    """The report's notes; future versions are also a warning event (logged as one)."""
    if plan.future:
        from .events import Event, fan_out

        note = future_note(plan.future) + "; apply goes on without them (strict refuses)"
        fan_out(on_event)(Event("warning", note))
        if plan.seeds_deferred:
            note += "; seeds wait for it (they target the newest schema)"
        return (note,)
    return ("seeds deferred: forward files are still pending",) if plan.seeds_deferred else ()


def _order_notes(
    pending: Sequence[Migration], rows: list[LedgerRow], strict: bool
) -> tuple[str, ...]:
    """The out-of-order note for a report, or the refusal under strict order (exit 2)."""
    late = out_of_order(pending, rows)
    if not late:
        return ()
    note = out_of_order_note(late, rows)
    if strict:
        raise OutOfOrder(
            f"{note} | nothing was run; strict order refuses them: renumber them above the "
            "newest applied version, or run without --strict-order",
            [m.display_path for m in late],
        )
    return (note,)


def _would(m: Migration, action: str) -> FileResult:
    return FileResult(m.kind, m.version, m.name, action, no_transaction=m.no_transaction)


@contextmanager
def _read_only(
    target: Target, sql_dir: SqlDir, wait: float, tables: LedgerTables
) -> Iterator[tuple[MigrationSet, list[LedgerRow], psycopg.Connection[Any], str]]:
    """Files, ledger rows, connection and masked target: what status and verify read."""
    files = load_files(sql_dir)
    with _session(target, wait) as (conn, _conninfo, shown):
        yield files, ledger.read_rows(conn, tables), conn, shown


def status(
    target: Target,
    sql_dir: SqlDir = None,
    *,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> StatusReport:
    """Every file: applied, pending, failed (its last attempt), drifted (changed since
    applied), missing (its file was deleted) or future (applied by a newer release);
    pending files older than the newest applied one are noted as out of order."""
    tables = LedgerTables(ledger_schema, ledger_table)
    with _read_only(target, sql_dir, wait, tables) as (files, rows, conn, shown):
        states = file_states(files, rows)
        if any(s.state in ("pending", "changed") for s in states):
            states = file_states(files, rows, ledger.read_failures(conn, tables))
        applied = {r.version for r in rows if r.kind == "forward"}
        pending = [m for m in files.forward if m.version not in applied]
        backfills = _backfills(conn, tables, pending)
    ahead = [s for s in states if s.state == "future"]
    notes = (
        [future_note([LedgerRow(s.kind, s.version, s.name, "") for s in ahead])] if ahead else []
    )
    return StatusReport(shown, states, (*notes, *_order_notes(pending, rows, False)), backfills)


def _backfills(
    conn: psycopg.Connection[Any], tables: LedgerTables, pending: Sequence[Migration]
) -> tuple[BackfillPosition, ...]:
    """The positions of pending batched files part-way through (read only when one is
    pending: any other status costs no extra round trip)."""
    versions = {m.version for m in pending if is_batched(m)}
    if not versions:
        return ()
    found = read_positions(conn, tables)
    return tuple(p for p in found if p.version in versions and not p.done)


def verify(
    target: Target,
    sql_dir: SqlDir = None,
    *,
    wait: float = 0,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
) -> VerifyReport:
    """Run the verify files of every applied version; raise VerificationFailed on a false check."""
    from .checks import run_checks

    with _read_only(target, sql_dir, wait, LedgerTables(ledger_schema, ledger_table)) as (
        files,
        rows,
        conn,
        shown,
    ):
        applied = {r.version for r in rows if r.kind == "forward"}
        report = run_checks(
            conn, parse_all([m for m in files.verify if m.version in applied]), shown
        )
    if not report.ok:
        raise VerificationFailed(report.failure_message(), report)
    return report


def rollback(
    target: Target,
    sql_dir: SqlDir = None,
    *,
    steps: int | None = 1,
    to: int | None = None,
    dry_run: bool = False,
    allow_data_loss: bool = False,
    confirm: Callable[[Sequence[str]], bool] | None = None,
    lock_timeout: str | int = "200ms",
    lock_retries: int = DEFAULT_LOCK_RETRIES,
    wait: float = 0,
    runner_wait: float = 300,
    ledger_schema: str = "public",
    ledger_table: str = "sqlrunner_ledger",
    on_event: Listener | None = None,
) -> RollbackReport:
    """Undo applied forward files, newest first; refuse to drop real data unless allowed.

    ``to=0`` undoes everything reversible and stops in front of the newest
    irreversible file (the report's notes name it). Seeds are forgotten by the
    ledger with the first step, so the next apply re-runs them (they are
    idempotent, and the tables they fill may have been dropped).
    """
    started = time.monotonic()
    files = load_files(sql_dir)
    tables = LedgerTables(ledger_schema, ledger_table)
    policy = RetryPolicy(lock_timeout_ms(lock_timeout), lock_retries)
    with _session(target, wait) as (conn, conninfo, shown):
        _require_supported_server(conn)
        rows = ledger.read_rows(conn, tables)
        refuse_drift(files, rows)
        plan = plan_rollback(files, rows, steps=None if to is not None else steps, to_version=to)
        stopped = stopped_in_front_of(rows, plan) if to == 0 else None
        notes = (stopped,) if stopped else ()
        from .execute import LockedRun
        from .safety import data_at_risk

        scripts = parse_all([step.rollback for step in plan])
        losses = data_at_risk(conn, scripts, parse_all(files.seed), files.forward)
        if dry_run:
            would = tuple(_would(s.rollback, "would roll back") for s in plan)
            return RollbackReport(shown, would, elapsed_ms(started), True, tuple(losses), notes)
        if losses and not allow_data_loss and not (confirm is not None and confirm(losses)):
            raise DataLossRefused(
                "rollback would drop data: "
                + "; ".join(losses)
                + " | nothing was changed; export what you need, then confirm (--yes)",
                losses,
            )
        from .notices import relay_server_messages

        with relay_server_messages(conn, on_event) as listener:
            run = LockedRun(conn, conninfo, tables, policy, runner_wait, listener, shown, started)
            return replace(run.rollback(rows, scripts, losses), notes=notes)


def seed(target: Target, sql_dir: SqlDir = None, **options: Any) -> ApplyReport:
    """Apply new or changed seed files; refuses while forward files are pending."""
    current = status(
        target,
        sql_dir,
        wait=options.get("wait", 0),
        **{k: v for k, v in options.items() if k.startswith("ledger_")},
    )
    pending = [f.label for f in current.pending if f.kind == "forward"]
    if pending:
        raise UsageError(
            f"{len(pending)} forward file(s) pending ({pending[0]} first): "
            "seeds target the newest schema; run apply first"
        )
    return apply(target, sql_dir, seed=True, **options)
