"""What a caller asks for: apply, rollback, seed, status, verify, check, repair, history.

Each entry point reads the files first, then opens one session (``session.open_session``),
plans (``plan``), and only when something will run loads the runner. None of them print
or exit: they log to ``logging.getLogger("sqlrunner")``, raise SqlRunnerError subclasses
(a psycopg error is never let through: it is the ``__cause__`` of one) and return report
values. Options (lock_timeout, lock_retries, wait, runner_wait, ledger_schema,
ledger_table, strict, strict_order) are keyword arguments whose defaults live once, in
``session.Options``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import psycopg

from . import ledger
from .errors import DataLossRefused, OutOfOrder, Problem, UsageError, VerificationFailed
from .files import (
    Migration,
    MigrationSet,
    SqlDir,
    is_batched,
    load_files,
    read_migration_set,
    resolve_sql_dir,
)
from .ledger import LedgerTables, RunContext
from .locking import RetryPolicy, runner_lock
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
from .position import BackfillPosition, Throttle, read_positions
from .report import (
    ApplyReport,
    CheckReport,
    Event,
    FileResult,
    Listener,
    RollbackReport,
    StatusReport,
    VerifyReport,
    elapsed_ms,
    fan_out,
)
from .session import (
    Options,
    Target,
    open_session,
    relay_server_messages,
    require_supported_server,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .session import OptionValues
    from .sqltext import Script

__all__ = [
    "Target",
    "apply",
    "check",
    "history",
    "parse_all",
    "repair",
    "resolve_sql_dir",
    "rollback",
    "seed",
    "status",
    "verify",
]


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
    on_event: Listener | None = None,
    show_sql: bool = False,
    between_batches: Callable[[], None] | None = None,
    **options: Unpack[OptionValues],
) -> ApplyReport:
    """Apply pending forward files, then new or changed seeds, then verify.

    When nothing is pending this costs one query after connecting: no lock, no
    catalog scan, no verify. Safe to call from several processes at once.
    Versions applied by a newer release ("future") are a warning and a note in
    the report; ``strict=True`` refuses them (FutureVersions, exit 2).
    ``strict_order`` refuses (OutOfOrder) a pending file older than the newest applied.
    ``dry_run`` with ``show_sql`` lists in ``report.statements`` the SQL the run would
    send, in order, with the table locks of each statement (dryrun.py).
    Standbys (replicas.py): ``wait_replicas`` seconds for every standby to replay the run's
    last commit (ReplicasBehind, exit 8, when one has not; ``report.replicas`` says what was
    waited for); ``max_replica_lag`` bytes: no-transaction statements wait while a standby
    is further behind, up to ``replica_wait`` seconds; ``replicas``: DSNs of standbys
    pg_stat_replication does not show (cascaded, or hidden by a pooler or privilege).
    Batched files stop cleanly between batches once ``budget`` seconds have passed
    (BackfillPending, exit 6: the next apply continues); ``between_batches`` is called
    between their batches (to wait for something of the caller's, say).

    Longer than a screen on purpose: it is the one path from connecting to the report,
    read top to bottom, and the no-op's single query stays visible in it.
    """
    started = time.monotonic()
    opts = Options(**options)
    files = load_files(sql_dir)
    tables = LedgerTables.of(opts)
    with open_session(target, opts.wait) as (conn, conninfo, shown):
        require_supported_server(conn)
        rows = ledger.read_rows(conn, tables, when=False)
        refuse_drift(files, rows, strict=opts.strict)
        plan = plan_apply(files, rows, to_version=to, seed=seed, verify=verify)
        notes = _apply_notes(plan, on_event) + _order_notes(plan.forward, rows, opts.strict_order)
        # the rollback files of what is about to be applied must be sound too
        undo = [r for r in map(files.rollback_for, (m.version for m in plan.forward)) if r]
        if dry_run or (plan.empty and not _partial_seeds_may_run(files, rows, plan)):
            parse_all([*plan.forward, *plan.seeds], undo)
            would = tuple(_would(m, "would apply") for m in plan.forward) if dry_run else ()
            seeds = tuple(_would(m, "would seed") for m in plan.seeds) if dry_run else ()
            # apply --dry-run --sql: the SQL the run would send, with its locks
            preview = dry_run and show_sql
            sent = _preview(conn, plan, tables, RetryPolicy.of(opts)) if preview else ()
            return ApplyReport(shown, would, seeds, None, elapsed_ms(started), dry_run, notes, sent)
        from .replicas import await_replay, watching
        from .runner import LockedRun  # the runner, and the parser, load only to run

        scripts = parse_all([*plan.forward, *plan.seeds, *plan.verify], undo)
        with (
            watching(conn, opts, on_event) as gate,
            relay_server_messages(conn, on_event) as listener,
        ):
            throttle = Throttle(opts.budget, between_batches, started)
            run = LockedRun(conn, conninfo, opts, listener, shown, started, gate, throttle)
            report = run.apply(
                files, scripts, to=to, seed=seed, verify=verify, notes=notes, strict=opts.strict
            )
        if opts.wait_replicas is None or not report.changed:  # nothing applied: no wait
            return report
        return await_replay(
            conn, report, timeout=opts.wait_replicas, replicas=opts.replicas, emit=on_event
        )


def _preview(
    conn: psycopg.Connection[Any],
    plan: ApplyPlan,
    tables: LedgerTables,
    policy: RetryPolicy,
) -> tuple[Any, ...]:
    """The SQL a run of ``plan`` would send (apply --dry-run --sql)."""
    from .dryrun import preview_apply

    scripts = {s.migration.path: s for s in parse_all([*plan.forward, *plan.seeds, *plan.verify])}
    return preview_apply(
        conn,
        tables,
        policy,
        [scripts[m.path] for m in plan.forward],
        [scripts[m.path] for m in plan.seeds],
        [scripts[m.path] for m in plan.verify],
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
    target: Target, sql_dir: SqlDir, opts: Options
) -> Iterator[tuple[MigrationSet, list[LedgerRow], psycopg.Connection[Any], str]]:
    """Files, ledger rows, connection and masked target: what status and verify read."""
    files = load_files(sql_dir)
    with open_session(target, opts.wait) as (conn, _conninfo, shown):
        yield files, ledger.read_rows(conn, LedgerTables.of(opts)), conn, shown


def status(target: Target, sql_dir: SqlDir = None, **options: Unpack[OptionValues]) -> StatusReport:
    """Every file: applied, pending, failed (its last attempt), drifted (changed since
    applied), missing (its file was deleted) or future (applied by a newer release);
    pending files older than the newest applied one are noted as out of order."""
    opts = Options(**options)
    with _read_only(target, sql_dir, opts) as (files, rows, conn, shown):
        states = file_states(files, rows)
        if any(s.state in ("pending", "changed") for s in states):
            failures = ledger.read_failures(conn, LedgerTables.of(opts))
            states = file_states(files, rows, failures)
        applied = {r.version for r in rows if r.kind == "forward"}
        pending = [m for m in files.forward if m.version not in applied]
        backfills = _backfills(conn, LedgerTables.of(opts), pending)
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


def verify(target: Target, sql_dir: SqlDir = None, **options: Unpack[OptionValues]) -> VerifyReport:
    """Run the verify files of every applied version; raise VerificationFailed on a false check."""
    from .checks import run_checks

    with _read_only(target, sql_dir, Options(**options)) as (files, rows, conn, shown):
        applied = {r.version for r in rows if r.kind == "forward"}
        checked = parse_all([m for m in files.verify if m.version in applied])
        report = run_checks(conn, checked, shown)
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
    on_event: Listener | None = None,
    **options: Unpack[OptionValues],
) -> RollbackReport:
    """Undo applied forward files, newest first; refuse to drop real data unless allowed.

    ``to=0`` undoes everything reversible and stops in front of the newest
    irreversible file (the report's notes name it). Seeds are forgotten by the
    ledger with the first step, so the next apply re-runs them (they are
    idempotent, and the tables they fill may have been dropped).
    """
    started = time.monotonic()
    opts = Options(**options)
    files = load_files(sql_dir)
    with open_session(target, opts.wait) as (conn, conninfo, shown):
        require_supported_server(conn)
        rows = ledger.read_rows(conn, LedgerTables.of(opts))
        refuse_drift(files, rows)
        plan = plan_rollback(files, rows, steps=None if to is not None else steps, to_version=to)
        stopped = stopped_in_front_of(rows, plan) if to == 0 else None
        notes = (stopped,) if stopped else ()
        from .dataloss import data_at_risk
        from .runner import LockedRun

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
        with relay_server_messages(conn, on_event) as listener:
            run = LockedRun(conn, conninfo, opts, listener, shown, started)
            return replace(run.rollback(rows, scripts, losses), notes=notes)


def seed(
    target: Target,
    sql_dir: SqlDir = None,
    *,
    verify: bool = True,
    on_event: Listener | None = None,
    **options: Unpack[OptionValues],
) -> ApplyReport:
    """Apply new or changed seed files; refuses while forward files are pending."""
    pending = [f.label for f in status(target, sql_dir, **options).pending if f.kind == "forward"]
    if pending:
        raise UsageError(
            f"{len(pending)} forward file(s) pending ({pending[0]} first): "
            "seeds target the newest schema; run apply first"
        )
    return apply(target, sql_dir, seed=True, verify=verify, on_event=on_event, **options)


# --- ledger repairs a DBA needs after editing or hand-running files ---------------------------


def repair(
    target: Target,
    sql_dir: SqlDir = None,
    *,
    accept: int | None = None,
    mark_applied: int | None = None,
    forget: int | None = None,
    forget_seeds: bool = False,
    reapply: bool = False,
    on_event: Listener | None = None,
    **options: Unpack[OptionValues],
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
    action, version = _one_repair(accept, mark_applied, forget, forget_seeds)
    opts = Options(**options)
    files = load_files(sql_dir)
    tables = LedgerTables.of(opts)
    ctx = RunContext.new()
    with (
        open_session(target, opts.wait) as (conn, conninfo, _shown),
        runner_lock(conninfo, opts, f"sqlrunner repair ({ctx.client})", on_event),
    ):
        ledger.create_tables(conn, tables)
        rows = {r.version: r for r in ledger.read_rows(conn, tables) if r.kind == "forward"}
        if action == "forget-seeds":
            statements = [ledger.forget_seeds(tables)]
            what, kind, name = "seed files: the next apply re-runs them", "seed", None
        else:
            statements, what = _forward_repair(tables, ctx, files, rows, action, version, reapply)
            kind, name = "forward", what.split("_", 1)[1]
        history = ledger.record_history(
            tables,
            ctx,
            action,
            "ok",
            kind=kind,
            version=version if kind == "forward" else None,
            name=name,
            detail="ledger repaired by hand",
        )
        conn.execute("; ".join(["BEGIN", *statements, history, "COMMIT"]))
    return f"{action} {what}: recorded in the ledger and its history"


def _one_repair(
    accept: int | None, mark_applied: int | None, forget: int | None, forget_seeds: bool
) -> tuple[str, int]:
    """(action, version) of the one repair asked for; asking for none or several is refused."""
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
    return chosen[0]


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
    target: Target, *, limit: int = 50, **options: Unpack[OptionValues]
) -> list[dict[str, Any]]:
    """The newest ``limit`` history rows: who did what, when, how long, with what outcome
    (keys at, by, client, action, kind, version, name, outcome, duration_ms, detail)."""
    opts = Options(**options)
    with open_session(target, opts.wait) as (conn, _conninfo, _shown):
        return ledger.read_history(conn, LedgerTables.of(opts), limit)
